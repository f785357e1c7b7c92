"""The kept rows of a pool with what rides along into an exported dataset: the weight and the
pool's own score columns, in the kept rows' order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sungen_ray.errors import SungenError

RIDE_ALONG = ("round", "logprob", "channel_margin")


def curated_table(pool: pa.Table, kept_idx: np.ndarray, weights: np.ndarray | None) -> pa.Table:
    """``pool``'s rows with ids ``kept_idx`` (in that order), plus ``weight`` when given."""
    if "idx" in pool.column_names:
        idx = np.asarray(pool.column("idx").to_numpy(zero_copy_only=False), dtype=np.int64)
    else:  # JSONL/CSV without ids: the reader numbered the rows in file order
        idx = np.arange(pool.num_rows, dtype=np.int64)
    order = np.argsort(idx)
    pos = np.searchsorted(idx[order], kept_idx)
    pos = np.clip(pos, 0, len(order) - 1)
    if not (idx[order][pos] == kept_idx).all():
        raise SungenError("exported rows not found in the pool (was the pool changed since it was curated?)")
    rows = pa.array(order[pos])
    columns = {"idx": pa.array(kept_idx, pa.int64())}
    columns["text"] = pool.column("text").take(rows).cast(pa.string())
    columns["label"] = pool.column("label").take(rows).cast(pa.int64())
    if weights is not None:
        columns["weight"] = pa.array(np.asarray(weights, dtype=np.float32))
    for name in RIDE_ALONG:
        if name in pool.column_names:
            col = pool.column(name).take(rows)
            columns[name] = col.cast(pa.float32()) if name != "round" else col.cast(pa.int64())
    return pa.table(columns)
