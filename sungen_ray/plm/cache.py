"""Where sungen-ray keeps what it derives from models: converted checkpoints, weights hashes."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where converted models live; ``SUNGEN_RAY_CACHE`` moves it (e.g. to shared storage)."""
    return Path(os.environ.get("SUNGEN_RAY_CACHE", Path.home() / ".cache" / "sungen-ray")).expanduser()
