"""Encode texts with frozen MiniLM: a Ray Data stage (an actor pool of encoders) or this process.

The Ray Data stage is ``map_batches`` over an actor pool: each actor loads the network once and
encodes batch after batch (one per GPU when the cluster has GPUs, else one per ``threads`` CPUs).
Small jobs run in this process instead: an actor pool costs seconds to start (a Python worker,
torch and the model per actor), which at a few hundred texts is longer than the encoding itself
(``mode: auto`` and ``ray_min_rows``; docs/RESULTS.md, Embeddings once). Both run the same
``tam.minilm.encode_texts``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa

from sungen_ray.errors import SungenError
from sungen_ray.tam.minilm import DEFAULT_MAX_LEN, DIM, encode_texts


@dataclass
class EmbedConfig:
    # auto: the Ray Data stage from ray_min_rows new texts on, or whenever the cluster has GPUs
    mode: Literal["auto", "ray", "local"] = "auto"
    ray_min_rows: int = 5000
    actors: int | None = None  # None: one per GPU, else one per threads_per_actor free CPUs
    threads_per_actor: int = 1
    batch_size: int = 256  # texts per network call

    def validate(self) -> None:
        if self.mode not in ("auto", "ray", "local"):
            raise SungenError(f"features.mode: must be auto, ray or local, got {self.mode!r}")
        for name in ("ray_min_rows", "threads_per_actor", "batch_size"):
            if getattr(self, name) < 1:
                raise SungenError(f"features.{name}: must be >= 1, got {getattr(self, name)}")
        if self.actors is not None and self.actors < 1:
            raise SungenError(f"features.actors: must be >= 1, got {self.actors}")


# One job: rows of several pool files, told apart by ``part`` (0..k-1) and ``pos`` (row in its file).
Job = list[tuple[np.ndarray, list[str]]]  # per part: (idx, texts)


def use_ray(cfg: EmbedConfig, rows: int) -> bool:
    if cfg.mode != "auto":
        return cfg.mode == "ray"
    if rows >= cfg.ray_min_rows:
        return True
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def encode_parts(job: Job, cfg: EmbedConfig, max_len: int = DEFAULT_MAX_LEN) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (part, features in the part's row order) for every part of ``job``, each once whole."""
    rows = sum(len(t) for _, t in job)
    if not use_ray(cfg, rows):
        for part, (_, texts) in enumerate(job):
            yield part, encode_texts(texts, max_len, cfg.batch_size).numpy()
        return
    yield from _encode_ray(job, cfg, max_len)


class _EncoderActor:
    """One encoder of the actor pool: loads the network at start, then encodes batch after batch."""

    def __init__(self, max_len: int, batch_size: int, threads: int, device: str):
        import torch

        from sungen_ray.tam.minilm import _network

        torch.set_num_threads(threads)
        self.max_len, self.batch_size, self.device = max_len, batch_size, device
        _network(device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        feats = encode_texts(texts, self.max_len, self.batch_size, self.device).numpy()
        return {"part": batch["part"], "pos": batch["pos"], "features": feats}


def _pool_size(cfg: EmbedConfig, gpus: float) -> int:
    import ray

    if cfg.actors:
        return cfg.actors
    if gpus:
        return max(1, int(gpus))
    cpus = ray.available_resources().get("CPU", 1)
    if not os.environ.get("RAY_ADDRESS"):  # our private cluster: logical CPUs may exceed the cores
        cpus = min(cpus, os.cpu_count() or 1)
    return max(1, int(cpus // cfg.threads_per_actor))


def _batch_tables(job: Job, size: int) -> Iterator[pa.Table]:
    """One block per network batch, not per pool file: the actors take blocks as they free up, so
    none idles at the end while another works through a whole file (4 files on 2 actors left one
    idle for seconds when their starts were staggered)."""
    for k, (_, texts) in enumerate(job):
        for start in range(0, len(texts), size):
            chunk = texts[start : start + size]
            yield pa.table(
                {
                    "part": np.full(len(chunk), k, np.int32),
                    "pos": np.arange(start, start + len(chunk), dtype=np.int64),
                    "text": chunk,
                }
            )


def _encode_ray(job: Job, cfg: EmbedConfig, max_len: int) -> Iterator[tuple[int, np.ndarray]]:
    import ray
    from ray.data import DataContext

    from sungen_ray.parallel.ray_runtime import ensure_ray

    ensure_ray()
    gpus = ray.cluster_resources().get("GPU", 0)
    actors = _pool_size(cfg, gpus)
    tables = list(_batch_tables(job, cfg.batch_size))
    ctx = DataContext.get_current()
    keep_order = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True  # parts complete one after another: bounded memory here
    try:
        ds = ray.data.from_arrow(tables).map_batches(
            _EncoderActor,
            fn_constructor_kwargs={
                "max_len": max_len,
                "batch_size": cfg.batch_size,
                "threads": cfg.threads_per_actor,
                "device": "cuda" if gpus else "cpu",
            },
            batch_size=cfg.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            **({"num_gpus": 1} if gpus else {"num_cpus": cfg.threads_per_actor}),
        )
        out: list[np.ndarray | None] = [None] * len(job)
        filled = [0] * len(job)
        for part, (_, texts) in enumerate(job):
            if not texts:
                yield part, np.zeros((0, DIM), np.float32)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            feats = np.asarray(batch["features"], dtype=np.float32)
            for part in np.unique(batch["part"]):
                rows = batch["part"] == part
                if out[part] is None:
                    out[part] = np.empty((len(job[part][1]), feats.shape[1]), np.float32)
                out[part][batch["pos"][rows]] = feats[rows]
                filled[part] += int(rows.sum())
                if filled[part] == len(job[part][1]):
                    yield int(part), out[part]
                    out[part] = None
    finally:
        ctx.execution_options.preserve_order = keep_order
    missing = [k for k, (_, t) in enumerate(job) if filled[k] != len(t)]
    if missing:
        raise SungenError(f"embedding stage: parts {missing} came back incomplete")
