"""How far a round's prompt stream still needs to go, so the engines decode no batch the driver
will not read.

A vLLM replica works on about one engine batch of rows at a time, and each of those holds a row
that runs to the token limit, so the batches finish together, in waves. In a round's last wave the
driver needed about half the batches; the rest were decoded beside them until every label was full
and then aborted, which made that wave twice as long (docs/RESULTS.md, the stream's last wave). The
driver now tells the replicas where the rows it expects to need end; batches past that point wait
in the replica (``VLLMReplica._admit``) until the driver raises the limit or ends the stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

# Rows streamed beyond the estimate: a short estimate costs a small wave of its own after the
# driver raises the limit (a whole engine wave's latency), a long one only some rows decoded beside
# the needed ones, so the estimate errs long.
MARGIN = 1.15


def rows_to_go(need: list[int], kept: list[int], prompts: list[int], shares: list[float]) -> int | None:
    """Prompt rows to stream until every label is full: the slowest label's shortfall over its rows
    kept per prompt so far and its share of the stream, with ``MARGIN``. None while a short label
    has kept nothing yet (no yield to go on)."""
    rows = 0.0
    for k, short in enumerate(need):
        if short <= 0:
            continue
        if kept[k] <= 0 or shares[k] <= 0:
            return None
        rows = max(rows, short * prompts[k] / kept[k] / shares[k])
    return math.ceil(rows * MARGIN)


@dataclass
class RowLimit:
    """The driver's side: after each batch it reads, where the stream's needed rows end, rounded up
    to a whole engine batch and sent to the replicas (``send``) when it moves.

    ``first_row``: the row id of the stream's first position (batches start at ``first_row +
    b * batch_size``); ``shares``: each label's share of the stream's prompts (its ``counts``)."""

    send: Callable[[int], None]
    first_row: int
    batch_size: int
    shares: list[float]
    sent: int | None = None

    def update(self, next_row: int, need: list[int], kept: list[int], prompts: list[int]) -> None:
        """``next_row``: one past the last row id read; ``need``/``kept``/``prompts``: per label."""
        rows = rows_to_go(need, kept, prompts, self.shares)
        if rows is None:
            return
        # from the end of the batch the last row read belongs to: a resumed pass skips consumed row
        # ids, so that batch may end past next_row, and a limit inside it would hold the batch after
        read = math.ceil((next_row - self.first_row) / self.batch_size)
        limit = self.first_row + (read + math.ceil(rows / self.batch_size)) * self.batch_size
        if limit != self.sent:
            self.send(limit)
            self.sent = limit
