"""Load this worker's rows of a labelled pool and encode them for the TAM.

Frozen MiniLM features are not encoded here: the process that starts the run stores them beside
the pool once (``sungen_ray.features``), and each worker reads only its own rows' vectors.

Rows go to workers by ``idx % world_size``, so a restarted worker gets the same rows back. From
Parquet a worker reads only the ``idx`` and ``label`` columns whole (to validate the pool and pick
its rows) and streams the text column in chunks, keeping only its own texts, so its memory follows
its shard. The LSTM vocabulary comes from a streamed pass over all texts with a deterministic
trainer: every worker computes the same one without holding the texts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sungen_ray.data.labelled import LabelledData, checked_ids_and_labels, load_data, parquet_inputs, read_parquet
from sungen_ray.errors import SungenError
from sungen_ray.reweight.loop import Shard
from sungen_ray.tam.encoded import Dense, concat_encoded
from sungen_ray.tam.minilm import MiniLMEncoder
from sungen_ray.tam.registry import TamConfig, build_encoder

STREAM_ROWS = 65_536  # texts per streamed chunk


def make_shard(data: LabelledData, num_labels: int, tam: TamConfig, rank: int = 0, world_size: int = 1) -> Shard:
    """The shard of an in-memory pool (JSONL/CSV inputs; see ``load_shard`` for Parquet)."""
    _check_workers(world_size, len(data))
    rows = np.flatnonzero(data.idx % world_size == rank)
    encoder = build_encoder(tam, data.text)
    local = data.subset(rows)
    return Shard(
        idx=torch.from_numpy(local.idx),
        labels=torch.from_numpy(local.label),
        data=encoder.encode(local.text),
        num_labels=num_labels,
        encoder=encoder,
    )


def pool_ids_and_labels(path, num_labels: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate the whole pool and return (idx, labels, number of labels), reading no texts from Parquet."""
    files = parquet_inputs(path)
    if files is None:
        data, num_labels = load_data(path, num_labels)
        return data.idx, data.label, num_labels
    try:
        names = pq.read_schema(files[0]).names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SungenError(f"{files[0]}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc
    cols = [c for c in ("idx", "label") if c in names]
    tables = [read_parquet(f, columns=cols) for f in files]
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    idx, labels = checked_ids_and_labels(table, str(path), num_labels, min_labels=2, columns=names)
    return idx, labels, num_labels or int(labels.max()) + 1


def load_shard(path, num_labels: int | None, tam: TamConfig, rank: int = 0, world_size: int = 1) -> Shard:
    """This worker's rows of the pool at ``path``, encoded; only its own texts are ever held."""
    files = parquet_inputs(path)
    if files is None:
        data, num_labels = load_data(path, num_labels)
        return make_shard(data, num_labels, tam, rank, world_size)
    idx, labels, num_labels = pool_ids_and_labels(path, num_labels)
    _check_workers(world_size, len(idx))
    mine = idx % world_size == rank
    if tam.name == "lstm":  # the vocabulary of all texts, counted chunk by chunk
        encoder = build_encoder(tam, (chunk.to_pylist() for chunk in _stream_texts(files)))
    else:
        encoder = build_encoder(tam)
    if isinstance(encoder, MiniLMEncoder):  # stored once per pool (features.pool): read, never encoded here
        from sungen_ray.features.pool import read_pool_features

        data = Dense(read_pool_features(files, mine, encoder.max_len))
    else:
        parts, start = [], 0
        for chunk in _stream_texts(files):  # own texts only, encoded a chunk at a time
            parts.append(encoder.encode(chunk.filter(pa.array(mine[start : start + len(chunk)])).to_pylist()))
            start += len(chunk)
        data = concat_encoded(parts)
        del parts
    rows = np.flatnonzero(mine)
    prior = pool_channel_margin(files)
    shard = Shard(
        idx=torch.from_numpy(idx[rows]),
        labels=torch.from_numpy(labels[rows]),
        data=data,
        num_labels=num_labels,
        encoder=encoder,
        prior=None if prior is None else torch.from_numpy(prior[rows]),
    )
    del idx, labels, mine
    release_free_memory()
    return shard


def pool_channel_margin(files: list[Path]) -> np.ndarray | None:
    """The pool's ``channel_margin`` column in row order (float32), or None unless every file has
    it: a pool half scored must not reweight half its rows from a prior and half from nothing."""
    have = ["channel_margin" in pq.read_schema(f).names for f in files]
    if not all(have):
        if any(have):
            print(f"[reweight] {have.count(False)} of {len(files)} pool files lack channel_margin: prior not used")
        return None
    parts = [read_parquet(f, columns=["channel_margin"]).column(0).to_numpy(zero_copy_only=False) for f in files]
    margin = np.concatenate(parts).astype(np.float32)
    if not np.isfinite(margin).all():
        raise SungenError(f"channel_margin: {int((~np.isfinite(margin)).sum())} non-finite values in the pool")
    return margin


def release_free_memory() -> None:
    """Hand memory freed by the streamed read back to the OS. Arrow's allocator and glibc's malloc
    keep freed chunk buffers and Python strings for reuse, so a worker's RSS stayed at what the
    read needed at its peak instead of what the shard holds for the rest of the run."""
    pa.default_memory_pool().release_unused()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): the allocator keeps its pages
        pass


def _check_workers(world_size: int, n: int) -> None:
    if world_size > n:
        raise SungenError(f"{world_size} workers for {n} samples: use at most {n} workers")


def _stream_texts(files: list[Path]) -> Iterator[pa.Array]:
    for f in files:
        try:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=STREAM_ROWS, columns=["text"]):
                col = batch.column(0)
                if col.null_count:
                    raise SungenError(f"{f}: {col.null_count} row(s) have a null 'text'")
                yield col
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise SungenError(f"{f}: not a readable Parquet file (truncated or corrupt?): {exc}") from exc
