"""Atomic file writes: a stage's output either exists whole or not at all.

A restarted job decides what to skip by looking at what is on disk, so a half-written
Parquet or manifest must never be visible under its final name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _tmp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
    return Path(tmp)


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = _tmp_beside(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_parquet(path: str | Path, table: pa.Table) -> None:
    path = Path(path)
    tmp = _tmp_beside(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written staging directory into place (removing an older one)."""
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)


def ensure_writable_dir(path: str | Path, what: str = "--out") -> Path:
    """Create ``path`` and prove a file can be written there, before any work that would be lost."""
    from sungen_ray.errors import SungenError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = _tmp_beside(path / ".write-probe")
        probe.unlink()
    except OSError as exc:  # read-only mount, no permission, parent on a read-only fs
        raise SungenError(f"{what} {path}: cannot write there ({exc.strerror or exc})") from exc
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
