"""Fault injection for tests of the distributed path (restart from the latest checkpoint)."""

from __future__ import annotations

import pyarrow.fs as pafs

# Testing only: make the last-ranked worker raise once, after computing this outer iteration and
# before checkpointing it (so that iteration is lost and must be recomputed after the restart).
FAIL_ENV = "SUNGEN_FAIL_AT_ITER"


def maybe_fail(config: dict, iteration: int, rank: int, world: int) -> None:
    """Testing only: raise once (a marker file remembers it) on the last rank at ``fail_at``."""
    if config.get("fail_at") != iteration or rank != world - 1:
        return
    fs, marker = pafs.FileSystem.from_uri(config["fail_marker"])
    if fs.get_file_info(marker).type != pafs.FileType.NotFound:
        return
    with fs.open_output_stream(marker) as fh:
        fh.write(b"1")
    raise RuntimeError(f"injected fault at outer iteration {iteration} on rank {rank} ({FAIL_ENV})")
