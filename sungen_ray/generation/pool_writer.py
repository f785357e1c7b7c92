"""The finished pool: kept rows in row-id order, as the Parquet files of the pool schema."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from sungen_ray.data import atomic
from sungen_ray.data.labelled import POOL_SCHEMA
from sungen_ray.generation.config import GenerateConfig
from sungen_ray.tasks.spec import TaskSpec

ROWS_PER_FILE = 250_000


def pool_table(kept: list[dict], spec: TaskSpec, cfg: GenerateConfig, model_id: str) -> pa.Table:
    kept = sorted(kept, key=lambda r: r["row_id"])
    n = len(kept)
    return pa.table(
        {
            "idx": pa.array(np.arange(cfg.idx_offset, cfg.idx_offset + n, dtype=np.int64)),
            "text": pa.array([r["text"] for r in kept], pa.string()),
            "label": pa.array([r["label"] for r in kept], pa.int32()),
            "label_name": pa.array([r["label_name"] for r in kept], pa.string()),
            "task": pa.array([spec.name] * n, pa.string()),
            "round": pa.array([cfg.round] * n, pa.int16()),
            "model": pa.array([model_id] * n, pa.string()),
            "logprob": pa.array([r["logprob"] for r in kept], pa.float32()),
        },
        schema=POOL_SCHEMA,
    )


def own_scores(kept: list[dict]) -> np.ndarray:
    """Each kept row's own-label channel score from its generation, in ``pool_table``'s row order
    (NaN where generation could not give it, and for rows staged before it was recorded)."""
    rows = sorted(kept, key=lambda r: r["row_id"])
    return np.array([r.get("channel_own", math.nan) for r in rows], dtype=np.float64)


def write_pool(out: Path, table: pa.Table, round_: int) -> list[str]:
    """Write ``table`` in files of ROWS_PER_FILE rows; return their paths relative to ``out``."""
    files = []
    for i, start in enumerate(range(0, table.num_rows, ROWS_PER_FILE)):
        # Data files live in data/ so `pq.read_table(OUT / "data")` never trips over manifest.json.
        name = f"data/pool-r{round_:02d}-{i:05d}.parquet"
        atomic.write_parquet(out / name, table.slice(start, ROWS_PER_FILE))
        files.append(name)
    return files
