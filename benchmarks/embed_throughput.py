"""The Ray Data embedding stage against a plain in-process loop over the same texts (issue 22).

Texts: the committed pool bank's synthetic SST-2 texts (benchmarks/pools, 6000), the first --texts
of them, copied into a temporary Parquet pool of --files files. Both sides start cold:
- loop: ``tam.minilm.encode_texts`` in this process, torch on every core, network load included;
- stage: ``features.pool.ensure_pool_features(mode="ray")``, the stage the driver runs: pool read,
  content digest, Ray Data ``map_batches`` over an actor pool (one actor per core, one thread each,
  network load included), feature files and manifest written. Ray itself is started before the
  clock (the driver already runs Ray for generation); its start is printed apart.
Prints texts/s of both, the ratio stage/loop (issue 22's goal: >= 0.9 on the 2-core machine), and
checks that the stored vectors equal the loop's.

    python benchmarks/embed_throughput.py --texts 4000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sungen_ray.data.labelled import parquet_inputs  # noqa: E402
from sungen_ray.features.embed import EmbedConfig  # noqa: E402
from sungen_ray.features.pool import ensure_pool_features, read_pool_features  # noqa: E402
from sungen_ray.tam import minilm  # noqa: E402

BANK = Path(__file__).resolve().parent / "pools"


def bank_texts(n: int) -> list[str]:
    texts = []
    for f in sorted(BANK.glob("*/pool.parquet")):
        texts += pq.read_table(f, columns=["text"]).column(0).to_pylist()
    if n > len(texts):
        raise SystemExit(f"--texts {n}: the bank holds {len(texts)} texts")
    return texts[:n]


def write_pool(texts: list[str], files: int, root: Path) -> Path:
    pool = root / "pool"
    pool.mkdir()
    for k, rows in enumerate(np.array_split(np.arange(len(texts)), files)):
        table = pa.table({"idx": rows.astype(np.int64), "text": [texts[i] for i in rows]})
        pq.write_table(table, pool / f"part-{k:03d}.parquet")
    return pool


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=4000)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads-per-actor", type=int, default=1)
    args = ap.parse_args(argv)
    texts = bank_texts(args.texts)
    cores = os.cpu_count() or 1
    print(f"{len(texts)} bank texts, {cores} cores, torch {torch.__version__}, batch {args.batch_size}")

    import ray

    from sungen_ray.parallel.ray_runtime import ensure_ray

    t0 = time.perf_counter()
    ensure_ray()
    print(f"ray start (not timed below): {time.perf_counter() - t0:.1f} s, {ray.cluster_resources().get('CPU')} CPUs")

    with tempfile.TemporaryDirectory() as tmp:
        pool = write_pool(texts, args.files, Path(tmp))
        cfg = EmbedConfig(mode="ray", batch_size=args.batch_size, threads_per_actor=args.threads_per_actor)
        t0 = time.perf_counter()
        done = ensure_pool_features(pool, cfg)
        stage_s = time.perf_counter() - t0
        assert done["texts_encoded"] == len(texts) and done["where"] == "ray", done
        stored = read_pool_features(parquet_inputs(pool), np.ones(len(texts), bool))
    ray.shutdown()  # the actors' cores back before the loop runs

    torch.set_num_threads(cores)
    t0 = time.perf_counter()
    loop = minilm.encode_texts(texts, batch_size=args.batch_size)
    loop_s = time.perf_counter() - t0
    diff = float((stored - loop).abs().max())
    assert diff < 1e-4, f"stored vectors differ from the loop's by {diff}"

    print(f"loop  (in process, {cores} threads):       {loop_s:7.1f} s  {len(texts) / loop_s:7.1f} texts/s")
    print(
        f"stage (Ray Data, {cfg.threads_per_actor}-thread actors, stored): {stage_s:7.1f} s  "
        f"{len(texts) / stage_s:7.1f} texts/s"
    )
    print(f"ratio stage/loop: {loop_s / stage_s:.3f}  (max |stored - loop| {diff:.1e})")


if __name__ == "__main__":
    main()
