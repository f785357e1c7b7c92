"""Where every stage of a run writes: one place for the driver and the report alike.

The layout is an on-disk contract (a re-submitted job finds earlier stages by these paths), so
changing a name here orphans every finished run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    out: Path

    def __init__(self, out: str | Path):
        object.__setattr__(self, "out", Path(out))

    @property
    def config(self) -> Path:
        return self.out / "config.json"

    def round_dir(self, r: int) -> Path:
        return self.out / f"round-{r:02d}"

    def pool(self, r: int) -> Path:
        """Round r's generated pool (its own rows only)."""
        return self.out / "pool" / f"round-{r:02d}"

    def pool_data(self, r: int) -> Path:
        return self.pool(r) / "data"

    def pool_view(self, r: int) -> Path:
        """Links to the data files of rounds 0..r: the pool that round r reweights."""
        return self.round_dir(r) / "pool"

    def reweight(self, r: int) -> Path:
        return self.round_dir(r) / "reweight"

    def select(self, r: int) -> Path:
        return self.round_dir(r) / "select"

    def selected(self, r: int) -> Path:
        return self.select(r) / "selected.parquet"

    @property
    def final(self) -> Path:
        return self.out / "final"

    @property
    def plots(self) -> Path:
        return self.out / "plots"

    @property
    def report_json(self) -> Path:
        return self.out / "report.json"

    @property
    def report_md(self) -> Path:
        return self.out / "report.md"
