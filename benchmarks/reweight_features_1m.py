"""Reweighting a million rows with the quality TAM's features in one process (issue 22).

Once MiniLM features are computed once and stored (``sungen_ray.features``), an outer iteration
costs what the head costs: this measures it. A child process writes a synthetic pool (--samples
rows in --files Parquet files: idx, a short unique text, a label with --flip of them flipped) and
its feature store (384-d float32 vectors around one mean per class, L2-normalised, as MiniLM's
are), so this process holds only what reweighting holds. This process then reads its shard from
the store exactly as a reweighting worker does (``reweight.shard.load_shard``) and runs the shared
loop (``reweight.loop.run``) with the minilm TAM (MLP head, hidden 256) for --iters outer
iterations. Prints the load time, seconds per outer iteration by phase, and peak RSS of this
process (``ru_maxrss``; the child's memory is not counted). Goal (issue 22): <= 30 s per
iteration and <= 4 GB on the 2-core machine.

    python benchmarks/reweight_features_1m.py --samples 1000000 --iters 3
    python benchmarks/reweight_features_1m.py --samples 1000000 --iters 3 --batch-size 4096
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sungen_ray.features.pool import minilm_key  # noqa: E402
from sungen_ray.features.store import FeatureStore, pool_digest, store_dir  # noqa: E402
from sungen_ray.reweight.config import ReweightConfig  # noqa: E402
from sungen_ray.reweight.loop import run  # noqa: E402
from sungen_ray.reweight.shard import load_shard  # noqa: E402
from sungen_ray.tam import TamConfig  # noqa: E402

DIM = 384


def synthesise(root: str, n: int, files: int, flip: float, seed: int) -> None:
    """The pool and its stored features (run in a child process: its memory is not the run's)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((2, DIM)).astype(np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    pool = Path(root) / "pool"
    pool.mkdir()
    key, start = minilm_key(), 0
    for k, m in enumerate([len(a) for a in np.array_split(np.arange(n), files)]):
        idx = np.arange(start, start + m, dtype=np.int64)
        start += m
        clean = rng.integers(0, 2, m)
        labels = np.where(rng.random(m) < flip, 1 - clean, clean).astype(np.int32)
        texts = [f"synthetic text {i}" for i in idx]
        name = f"part-{k:03d}.parquet"
        pq.write_table(pa.table({"idx": idx, "text": texts, "label": labels}), pool / name)
        feats = 0.35 * means[clean] + rng.standard_normal((m, DIM), dtype=np.float32) / np.sqrt(DIM)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        store = FeatureStore.open(store_dir(pool / name), key, writable=True)
        store.put(name, idx, feats, pool_digest(idx, texts), encoded=0)
        del feats


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--flip", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=None, help="inner batch (default: the minilm TAM's, 128)")
    ap.add_argument("--hidden", type=int, default=256, help="head width (0: linear head)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(
            target=synthesise, args=(tmp, args.samples, args.files, args.flip, args.seed)
        )
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit(f"synthesising the pool failed (exit {child.exitcode})")
        print(f"pool + feature store of {args.samples} rows written in {time.perf_counter() - t0:.1f} s (child)")

        tam = TamConfig(name="minilm", hidden=args.hidden, batch_size=args.batch_size)
        cfg = ReweightConfig(tam=tam, outer_iters=args.iters, min_iters=args.iters + 1)
        cfg.device = args.device
        cfg.validate()
        t0 = time.perf_counter()
        shard = load_shard(Path(tmp) / "pool", 2, cfg.tam).to(args.device)
        load_s = time.perf_counter() - t0
        print(f"shard read from the store: {load_s:.1f} s, {len(shard)} rows, peak RSS so far {peak_rss_gb():.2f} GB")

        times = []

        def on_iteration(state, metrics):
            times.append(metrics["seconds"])
            phases = "  ".join(f"{k} {v:5.1f}" for k, v in metrics["seconds"].items())
            print(f"iteration {state['iteration']}: {sum(metrics['seconds'].values()):6.1f} s  ({phases})", flush=True)

        run(shard, cfg, on_iteration=on_iteration)
    per_iter = [sum(s.values()) for s in times]
    print(
        f"{args.samples} rows, {DIM}-d, minilm head (hidden {cfg.tam.hidden}, inner batch "
        f"{cfg.tam.train_setting('batch_size')}), {torch.get_num_threads()} threads, "
        f"{args.device}: {np.mean(per_iter):.1f} s per outer iteration (mean of {len(per_iter)}; "
        f"min {min(per_iter):.1f}, max {max(per_iter):.1f}), peak RSS {peak_rss_gb():.2f} GB"
    )


if __name__ == "__main__":
    main()
