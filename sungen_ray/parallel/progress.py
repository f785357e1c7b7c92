"""Progress a person can read: one line per running stage every few seconds.

On a terminal it is a tqdm bar (one line, redrawn in place); anywhere else (CI, a Ray job log,
output piped to a file) it is a plain line every ``every_s`` seconds, because a redrawn bar turns
into thousands of lines there. The same numbers either way: done/total, rates, ETA.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

EVERY_S = 30.0  # plain lines (no terminal): a ten-minute stage prints about twenty

MIN_RATE_WINDOW_S = 1.0


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress of one stage towards ``total`` units (state: the bar or the last print time).

    ``update(done, detail)`` may be called as often as convenient; it only writes every ``every_s``
    seconds. The ETA comes from the rate since the first unit was done, so a long start-up (an
    engine loading) does not make the ETA look worse than the work itself."""

    def __init__(
        self,
        name: str,
        total: int,
        unit: str = "samples",
        every_s: float = EVERY_S,
        file: TextIO | None = None,
        start: int = 0,
    ):
        self.name, self.total, self.unit, self.every_s = name, total, unit, every_s
        self.file = file or sys.stdout
        self.t0 = time.perf_counter()
        self.first: tuple[float, int] | None = None  # (time, done) when work was first seen
        self.last_print = -float("inf")
        self.done = start  # e.g. rows staged by an interrupted run
        self.bar = None
        if self.file.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=name, unit=f" {unit}", file=self.file, dynamic_ncols=True, initial=start)

    def rate(self) -> float | None:
        """Units per second since the first unit was done."""
        if self.first is None:
            return None
        t, d = self.first
        elapsed = time.perf_counter() - t
        # under a second of output a rate is noise (the first batch arrives all at once)
        return (self.done - d) / elapsed if elapsed >= MIN_RATE_WINDOW_S and self.done > d else None

    def eta(self) -> str:
        rate = self.rate()
        return format_seconds((self.total - self.done) / rate) if rate else "?"

    def update(self, done: int, detail: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if self.first is None and done > self.done:
            self.first = (now, self.done)
        if self.bar is not None:
            self.bar.update(done - self.done)
            self.done = done
            if detail:
                self.bar.set_postfix_str(detail, refresh=False)
            return
        self.done = done
        if not force and now - self.last_print < self.every_s:
            return
        self.last_print = now
        elapsed = format_seconds(now - self.t0)
        line = f"[{self.name}] {done}/{self.total} {self.unit}"
        if detail:
            line += f" | {detail}"
        line += f" | {elapsed} elapsed, ETA {self.eta()}"
        print(line, file=self.file, flush=True)

    def note(self, message: str) -> None:
        """A one-off line (start-up, resume) that does not break the bar."""
        if self.bar is not None:
            self.bar.write(f"[{self.name}] {message}", file=self.file)
        else:
            print(f"[{self.name}] {message}", file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
