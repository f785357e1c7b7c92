"""CPU time of the sparse bag-of-words inner step and the jvp alignment pass, old code beside new.

CPU time (``time.process_time``, one torch thread per process unless ``--threads``) rather than
wall time, because this machine is shared and loaded: wall time there measures the neighbours. Wall
time is printed beside it: on a quiet machine it shows the time workers wait on each other. The
pool is the one ``reweight_scale.py`` synthesises (perturbed gold texts), 4096 rows a step, 2^18
buckets x 32. Each source tree given with ``--tree`` (e.g. an export of an older commit:
``git archive COMMIT | tar -x -C /tmp/old``) runs in its own child processes with that tree first
on ``PYTHONPATH``; the trees take turns ``--reps`` times and the median is printed, so both columns
see the same load. ``--workers 2`` runs each measurement as two gloo processes (one shard each, as
Ray Train workers would) and reports the CPU time of each, all-reduce included.

    python benchmarks/bow_step_cpu.py --tree /tmp/old --tree .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(pool: str, rank: int, world: int, steps: int, batch: int, init: str, threads: int = 1) -> dict:
    """Per-step CPU ms of ``train`` on this rank's shard and the jvp pass's CPU ms per 1000 rows."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch

    try:
        from sungen_ray.parallel.collectives import LocalCollectives, TorchDistCollectives
    except ImportError:  # a tree from before the layout of issue 9
        from sungen_ray.reweight.collectives import LocalCollectives, TorchDistCollectives
    from sungen_ray.reweight.hypergrad import alignments
    from sungen_ray.tam.bow import BowEncoder
    from sungen_ray.tam.registry import TamConfig, build_model
    from sungen_ray.tam.train import train

    torch.set_num_threads(threads)
    coll = LocalCollectives()
    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
        coll = TorchDistCollectives()
    table = pq.read_table(pool)
    idx = table["idx"].to_numpy()
    mine = np.flatnonzero(idx % world == rank)
    texts = table["text"].to_pylist()
    data = BowEncoder().encode([texts[i] for i in mine])
    labels = torch.from_numpy(table["label"].to_numpy()[mine].astype(np.int64))
    ids = torch.from_numpy(idx[mine].copy())
    num_labels = int(table["label"].to_numpy().max()) + 1
    cfg = TamConfig(batch_size=batch)
    weights = torch.sigmoid(torch.randn(len(ids), generator=torch.Generator().manual_seed(rank)))

    def fresh():
        torch.manual_seed(0)
        return build_model(cfg, None, data, num_labels)

    train(fresh(), data, labels, weights, cfg=cfg, seed=99, ids=ids, coll=coll)  # warm-up
    model, done, clock, wall = fresh(), 0, time.process_time(), time.perf_counter()
    while done < steps:  # one epoch is len(pool) / batch steps
        train(model, data, labels, weights, cfg=cfg, seed=done, ids=ids, coll=coll)
        done += -(-len(idx) // batch)
    step_ms = (time.process_time() - clock) / done * 1e3
    wall_ms = (time.perf_counter() - wall) / done * 1e3
    g = {k: torch.randn_like(v) * 0.01 for k, v in model.named_parameters()}
    alignments("jvp", model, data.subset(torch.arange(64)), labels[:64], g)  # torch.func's first-call setup
    clock = time.process_time()
    alignments("jvp", model, data, labels, g)
    jvp_ms = (time.process_time() - clock) / len(ids) * 1e6
    if world > 1:
        torch.distributed.destroy_process_group()
    return {"rank": rank, "step_ms": step_ms, "wall_ms": wall_ms, "jvp_ms_per_1k": jvp_ms, "steps": done}


def run_tree(tree: Path, pool: Path, workers: int, steps: int, batch: int, threads: int = 1) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{tmp}/rendezvous"
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", str(pool), str(rank), str(workers), str(steps), str(batch), init]
                + [str(threads)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for rank in range(workers)
        ]
        outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"{tree}: a child failed")
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        pool, rank, world, steps, batch, init, threads = sys.argv[2:9]
        print(json.dumps(measure(pool, int(rank), int(world), int(steps), int(batch), init, int(threads))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", type=Path, required=True, help="source tree (repeatable)")
    ap.add_argument("--rows", type=int, default=40_960)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from reweight_scale import DEFAULT_GOLD, synthesise

    print(f"load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        pool = Path(tmp) / "pool.parquet"
        synthesise([g for g in DEFAULT_GOLD if g.is_file()], args.rows, 0.2, 0, pool)
        results = {str(t): [] for t in args.tree}
        for _ in range(args.reps):
            for tree in args.tree:
                results[str(tree)].append(
                    run_tree(tree.resolve(), pool, args.workers, args.steps, args.batch, args.threads)
                )
    print(
        f"{args.rows:,} rows, batch {args.batch}, W={args.workers}, {args.threads} thread(s) each, "
        f"median of {args.reps} (load {os.getloadavg()})"
    )
    print(f"{'tree':<30} {'rank':>4} {'CPU ms / inner step':>20} {'wall ms / step':>15} {'jvp CPU ms / 1k rows':>21}")
    for tree, reps in results.items():
        for rank in range(args.workers):
            step = statistics.median(r[rank]["step_ms"] for r in reps)
            wall = statistics.median(r[rank]["wall_ms"] for r in reps)
            jvp = statistics.median(r[rank]["jvp_ms_per_1k"] for r in reps)
            print(f"{tree:<30} {rank:>4} {step:>20.1f} {wall:>15.1f} {jvp:>21.2f}")


if __name__ == "__main__":
    main()
