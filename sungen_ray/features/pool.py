"""A pool's MiniLM features: fill its stores once, then read them wherever the pool is used.

- ``ensure_pool_features`` (the process that owns a stage: the driver, the CLI) encodes the rows
  of every pool file no store covers yet, with the Ray Data stage or in process (``embed``), and
  stores them. A later round's pool view holds the earlier rounds' files, already covered, so only
  the new round's rows are encoded.
- ``read_pool_features`` (a reweighting worker) reads only the rows it owns; it never encodes.
- ``attach_pool_features`` (selection, the final stage, baselines, weight health) hands the stored
  vectors to ``MiniLMEncoder``, so training on pool texts in this process encodes none of them.

Only Parquet pools have stores (a JSONL/CSV file is small by nature and is encoded in process).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sungen_ray.data.labelled import parquet_inputs, read_parquet
from sungen_ray.errors import SungenError
from sungen_ray.features.embed import EmbedConfig, encode_parts
from sungen_ray.features.store import FeatureKey, FeatureStore, pool_digest, store_dir
from sungen_ray.tam.minilm import DEFAULT_MAX_LEN, DIM, attach_features, encoder_id


def minilm_key(max_len: int = DEFAULT_MAX_LEN) -> FeatureKey:
    return FeatureKey(encoder_id(), max_len, DIM)


def _ids_and_texts(file: Path) -> tuple[np.ndarray, list[str]]:
    try:
        names = pq.read_schema(file).names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SungenError(f"{file}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc
    table = read_parquet(file, columns=[c for c in ("idx", "text") if c in names])
    if "text" not in table.column_names:
        raise SungenError(f"{file}: column 'text' missing")
    text = table.column("text")
    if text.null_count:
        raise SungenError(f"{file}: {text.null_count} row(s) have a null 'text'")
    idx = table.column("idx").to_numpy() if "idx" in table.column_names else np.arange(len(table), dtype=np.int64)
    return np.asarray(idx, dtype=np.int64), [str(t) for t in text.to_pylist()]


def _open(stores: dict[Path, FeatureStore], file: Path, key: FeatureKey, writable: bool) -> FeatureStore:
    root = store_dir(file)
    if root not in stores:
        stores[root] = FeatureStore.open(root, key, writable=writable)
    return stores[root]


def store_counts(path, max_len: int = DEFAULT_MAX_LEN) -> dict:
    """{rows, texts_encoded} summed over the stores of the pool at ``path`` (0 where none exists)."""
    files = parquet_inputs(path) or []
    key, stores = minilm_key(max_len), {}
    for f in files:
        try:
            _open(stores, f, key, writable=False)
        except SungenError:
            continue
    return {
        "rows": sum(sum(e["rows"] for e in s.files.values()) for s in stores.values()),
        "texts_encoded": sum(s.texts_encoded for s in stores.values()),
    }


def ensure_pool_features(path, cfg: EmbedConfig | None = None, max_len: int = DEFAULT_MAX_LEN) -> dict:
    """Encode and store the rows of every pool file at ``path`` that no store covers; return what
    was done: {rows, texts_encoded, where ("ray", "local" or None), seconds}."""
    cfg = cfg or EmbedConfig()
    cfg.validate()
    files = parquet_inputs(path)
    if files is None:
        return {"rows": 0, "texts_encoded": 0, "where": None, "seconds": 0.0}
    t0 = time.perf_counter()
    key, stores = minilm_key(max_len), {}
    job, targets, rows = [], [], 0
    for f in files:
        store = _open(stores, f, key, writable=True)
        idx, texts = _ids_and_texts(f)
        rows += len(idx)
        digest = pool_digest(idx, texts)
        name = f.resolve().name
        if not store.covers(name, digest):
            job.append((idx, texts))
            targets.append((store, name, digest))
    encoded = sum(len(t) for _, t in job)
    where = None
    if job:
        from sungen_ray.features.embed import use_ray

        where = "ray" if use_ray(cfg, encoded) else "local"
        print(f"[features] encoding {encoded} of {rows} pool texts ({where}); the rest are stored", flush=True)
        for part, feats in encode_parts(job, cfg, max_len):
            store, name, digest = targets[part]
            store.put(name, job[part][0], feats, digest, encoded=len(job[part][1]))
    return {"rows": rows, "texts_encoded": encoded, "where": where, "seconds": round(time.perf_counter() - t0, 3)}


def read_pool_features(files: list[Path], mine: np.ndarray, max_len: int = DEFAULT_MAX_LEN) -> torch.Tensor:
    """(mine.sum(), dim) stored features of the rows where ``mine`` is True (``mine`` runs over the
    pool's rows in file order). Reads ids and vectors only; encodes nothing: features missing,
    stale or truncated are a ``SungenError``."""
    key, stores, start, filled = minilm_key(max_len), {}, 0, 0
    # filled in place, one pool file at a time: the shard's size plus one file's vectors at the peak
    # (collecting the parts and concatenating them held the shard twice: 4.5 GB at 1M rows)
    out = np.empty((int(mine.sum()), key.dim), np.float32)
    for f in files:
        idx = read_parquet(f, columns=["idx"]).column(0).to_numpy()
        rows = _open(stores, f, key, writable=False).read(f.resolve().name, idx, mine[start : start + len(idx)])
        if filled + len(rows) > len(out):
            raise SungenError(f"pool has more rows than the row mask ({len(mine)})")
        out[filled : filled + len(rows)] = rows
        filled += len(rows)
        start += len(idx)
        del rows
    if start != len(mine):
        raise SungenError(f"pool has {start} rows, the row mask {len(mine)}")
    return torch.from_numpy(out)


def attach_pool_features(path, cfg: EmbedConfig | None = None, max_len: int = DEFAULT_MAX_LEN) -> dict:
    """Fill the pool's stores if needed, then make their vectors what ``MiniLMEncoder(max_len)``
    returns for the pool's texts in this process. Returns ``ensure_pool_features``'s record."""
    done = ensure_pool_features(path, cfg, max_len)
    files = parquet_inputs(path)
    if files is None:
        return done
    key, stores, texts, feats = minilm_key(max_len), {}, [], []
    for f in files:
        idx, t = _ids_and_texts(f)
        feats.append(_open(stores, f, key, writable=False).read(f.resolve().name, idx))
        texts += t
    attach_features(max_len, texts, torch.from_numpy(np.concatenate(feats)))
    return done


def ensure_tam_features(data, tam_name: str) -> None:
    """Before reweighting with ``tam_name``: its frozen-encoder features stored beside the pool, so
    no worker encodes (only rows no store covers are encoded). TAMs without frozen features: nothing."""
    if tam_name == "minilm":
        ensure_pool_features(data)
