"""Prompt rows for label-conditioned generation, balanced over labels.

Rows are interleaved label by label so every engine batch mixes labels: a replica that dies
mid-run then costs every label a little instead of one label a lot.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from sungen_ray.tasks.spec import TaskSpec


def label_targets(total: int, num_labels: int) -> list[int]:
    """Split ``total`` as evenly as possible; the first ``total % L`` labels get one more."""
    base, extra = divmod(total, num_labels)
    return [base + (1 if i < extra else 0) for i in range(num_labels)]


def prompt_rows(
    spec: TaskSpec,
    counts: list[int],
    seed: int,
    start_id: int = 0,
    conditions: list[str] | None = None,
    examples: dict[str, list[str]] | None = None,
    examples_per_prompt: int = 2,
) -> list[dict]:
    """``counts[l]`` prompts for label ``l``; each row carries a unique ``row_id`` (its sampling seed).

    With ``examples`` (label name -> texts), each prompt first shows a few of them completed in the
    same template, so the model continues a pattern of good samples (feedback-guided generation).
    """
    rng = random.Random(seed)
    queues = []
    for label, n in enumerate(counts):
        templates = spec.labels[label].prompts
        rows = []
        for k in range(n):
            template = templates[k % len(templates)]
            condition = rng.choice(conditions) if conditions else None
            prompt = template.format(condition=condition) if condition is not None else template
            shots = (examples or {}).get(spec.labels[label].name) or []
            if shots:
                chosen = rng.sample(shots, min(examples_per_prompt, len(shots)))
                prompt = "".join(f'{prompt}{text}"\n' for text in chosen) + prompt
            rows.append({"label": label, "label_name": spec.labels[label].name, "prompt": prompt})
        queues.append(rows)
    out: list[dict] = []
    longest = max(counts) if counts else 0
    for k in range(longest):
        for rows in queues:
            if k < len(rows):
                out.append(rows[k])
    for i, row in enumerate(out):
        row["row_id"] = start_id + i
    return out


def label_cycle(counts: list[int]) -> list[int]:
    """One period of the label order for a stream that needs ``counts[l]`` prompts of label ``l``:
    each label appears in proportion to its count, spread evenly (smooth weighted round-robin), so
    the stream can be cut anywhere and still be close to the wanted mix. Reduced by the counts' gcd,
    so a balanced task cycles ``0, 1, 0, 1, ...`` whatever the total."""
    live = [c for c in counts if c > 0]
    if not live:
        return []
    g = math.gcd(*live)
    weights = [c // g for c in counts]
    total = sum(weights)
    credit = [0] * len(counts)
    cycle = []
    for _ in range(total):
        for k, w in enumerate(weights):
            credit[k] += w
        k = max(range(len(counts)), key=lambda j: credit[j])
        credit[k] -= total
        cycle.append(k)
    return cycle


@dataclass
class PromptStream:
    """Prompt rows by position, computed lazily (inside a Ray Data map stage), for a generation that
    stops when every label is full instead of sending a fixed list.

    Position ``p`` gets label ``cycle[p % len(cycle)]``, that label's next template in turn, and a
    condition / feedback examples drawn by an RNG seeded from (seed, row id); the row id is
    ``start_id + p``, so a resumed run (a new ``start_id``) never repeats a sampling seed."""

    spec: TaskSpec
    counts: list[int]
    seed: int
    start_id: int = 0
    conditions: list[str] | None = None
    examples: dict[str, list[str]] | None = None
    examples_per_prompt: int = 2
    first: int = 0  # the first position streamed (a resumed pass goes on where it stopped)
    skip: frozenset[int] = frozenset()  # row ids a resumed pass consumed beyond ``first``
    last: int | None = None  # the first position not streamed (blocks are padded to whole engine batches)

    def __post_init__(self) -> None:
        self.cycle = label_cycle(self.counts)
        # before[k][i]: how many of the first i positions of a period hold label k
        self.before = [[0] * (len(self.cycle) + 1) for _ in self.counts]
        for i, lab in enumerate(self.cycle):
            for k in range(len(self.counts)):
                self.before[k][i + 1] = self.before[k][i] + (lab == k)

    def row(self, position: int) -> dict:
        period, offset = divmod(position, len(self.cycle))
        label = self.cycle[offset]
        nth = period * self.before[label][-1] + self.before[label][offset]  # this label's nth prompt
        row_id = self.start_id + position
        rng = random.Random(f"{self.seed}:{row_id}")
        templates = self.spec.labels[label].prompts
        prompt = templates[nth % len(templates)]
        if self.conditions:
            prompt = prompt.format(condition=rng.choice(self.conditions))
        shots = (self.examples or {}).get(self.spec.labels[label].name) or []
        if shots:
            chosen = rng.sample(shots, min(self.examples_per_prompt, len(shots)))
            prompt = "".join(f'{prompt}{text}"\n' for text in chosen) + prompt
        return {"row_id": row_id, "label": label, "label_name": self.spec.labels[label].name, "prompt": prompt}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data ``map_batches`` over ``ray.data.range``: positions in, prompt rows out."""
        positions = (int(p) + self.first for p in batch["id"])
        rows = [self.row(p) for p in positions if self.last is None or p < self.last]
        rows = [r for r in rows if r["row_id"] not in self.skip]
        return {
            "row_id": np.array([r["row_id"] for r in rows], dtype=np.int64),
            "label": np.array([r["label"] for r in rows], dtype=np.int64),
            "label_name": np.array([r["label_name"] for r in rows], dtype=object),
            "prompt": np.array([r["prompt"] for r in rows], dtype=object),
        }
