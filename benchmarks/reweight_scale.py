"""Reweighting at a million samples on Ray Train: seconds per outer iteration by phase, samples/s,
peak memory, how cost grows with N, and W=1 vs W=2 workers.

The pool is synthesised from gold texts (every --gold file, labels offset so tasks do not collide)
with light perturbation (word drops, adjacent swaps, duplications) and a share of flipped labels,
written as Parquet in a temp dir, then reweighted by ``run_distributed`` exactly as
``sungen-ray reweight --workers W`` would.

    python benchmarks/reweight_scale.py --samples 1000000
    python benchmarks/reweight_scale.py --samples 1000000 --small 100000 --scaling-samples 100000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from sungen_ray.config import from_dict
from sungen_ray.data.atomic import read_json
from sungen_ray.data.labelled import read_labelled
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.reweight.distributed import run_distributed

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_GOLD = [SHARED / "subj/all.jsonl", SHARED / "ag_news/test.jsonl", SHARED / "sst2/validation.jsonl"]
PHASES = ("inner", "outer", "hypergrad", "update")


def synthesise(gold: list[Path], n: int, flip: float, seed: int, path: Path, chunk: int = 200_000) -> int:
    """Write ``n`` perturbed gold rows as Parquet row groups; returns the number of labels."""
    rng = np.random.default_rng(seed)
    texts, labels, offset = [], [], 0
    for g in gold:
        d = read_labelled(g)
        texts += [t.split() for t in d.text]
        labels.append(d.label + offset)
        offset += int(d.label.max()) + 1
    labels = np.concatenate(labels)
    writer = None
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        base = rng.integers(0, len(texts), m)
        out = []
        for i, r in zip(base, rng.random((m, 3))):
            words = list(texts[i])
            if len(words) > 3 and r[0] < 0.5:  # drop a word
                del words[rng.integers(len(words))]
            if len(words) > 2 and r[1] < 0.5:  # swap two adjacent words
                j = rng.integers(len(words) - 1)
                words[j], words[j + 1] = words[j + 1], words[j]
            if r[2] < 0.3:  # duplicate a word
                j = rng.integers(len(words))
                words.insert(j, words[j])
            out.append(" ".join(words))
        y = labels[base]
        flipped = rng.random(m) < flip
        y = np.where(flipped, (y + rng.integers(1, offset, m)) % offset, y)
        table = pa.table(
            {
                "idx": pa.array(np.arange(start, start + m, dtype=np.int64)),
                "text": out,
                "label": pa.array(y.astype(np.int32)),
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    return offset


class PeakRss:
    """Peak of the summed RSS of this process and all its descendants (Ray's raylet, GCS and the
    Train workers are children here), and of the Train worker processes alone, sampled every 0.2 s."""

    def __init__(self):
        self.total = self.workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = workers = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                    total += rss
                    if "RayTrainWorker" in " ".join(p.cmdline()):
                        workers += rss
                except psutil.Error:
                    pass
            self.total, self.workers = max(self.total, total), max(self.workers, workers)


def reweight(data: Path, n: int, workers: int, cfg: ReweightConfig, root: Path) -> dict:
    out = root / f"out-n{n}-w{workers}"
    clock = time.perf_counter()
    with PeakRss() as rss:
        run_distributed(data, out, cfg, workers=workers, max_failures=0)
    wall = time.perf_counter() - clock
    iters = read_json(out / "metrics.json")["iterations"]
    last = iters[-1]  # the first iteration also pays one-off warm-up
    secs = sum(last["seconds"].values())
    return {
        "n": n,
        "workers": workers,
        "phases": {k: last["seconds"][k] for k in PHASES},
        "first_iteration_s": sum(iters[0]["seconds"].values()),
        "iteration_s": secs,
        "samples_per_s": n / secs,
        "load_encode_s": last["shard_load_seconds"],
        "wall_s": wall,
        "peak_rss_total_gb": rss.total / 1e9,
        "peak_rss_workers_gb": rss.workers / 1e9,
    }


def show(r: dict) -> None:
    ph = " ".join(f"{k} {v:.2f}s" for k, v in r["phases"].items())
    print(
        f"N={r['n']:>9,} W={r['workers']}: {r['iteration_s']:.2f} s/outer iteration ({ph}) | "
        f"{r['samples_per_s']:,.0f} samples/s | first iteration {r['first_iteration_s']:.2f}s | "
        f"load+encode {r['load_encode_s']:.1f}s | peak RSS workers {r['peak_rss_workers_gb']:.2f} GB, "
        f"all Ray processes + driver {r['peak_rss_total_gb']:.2f} GB | wall {r['wall_s']:.0f}s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000, help="second size, to show growth with N (0 = skip)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scaling-samples", type=int, default=100_000, help="W=1 vs W=2 at this N (0 = skip)")
    ap.add_argument("--iters", type=int, default=2, help="outer iterations per run (the last one is reported)")
    ap.add_argument("--gold", nargs="+", type=Path, default=[p for p in DEFAULT_GOLD if p.is_file()])
    ap.add_argument("--flip", type=float, default=0.2)
    ap.add_argument(
        "--config",
        type=json.loads,
        default={"tam": {"name": "bow", "buckets": 1 << 16, "batch_size": 4096}},
        help="ReweightConfig fields as JSON (default: bow, 65536 hash buckets, inner batch 4096)",
    )
    ap.add_argument("--tmp", default=None, help="where to write the pool and outputs (default: a temp dir)")
    args = ap.parse_args()
    cfg = from_dict(ReweightConfig, {"outer_iters": args.iters, "stop_patience": 0, **args.config})
    print(f"config: {json.dumps(args.config)}, {args.iters} outer iterations, gold {[str(g) for g in args.gold]}")
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 1e9:.0f} GB", flush=True)

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        results = []
        sizes = sorted({args.samples, args.small, args.scaling_samples} - {0})
        for n in sizes:
            data = root / f"pool-{n}"
            data.mkdir()
            clock = time.perf_counter()
            synthesise(args.gold, n, args.flip, 0, data / "pool.parquet")
            print(f"synthesised {n:,} rows in {time.perf_counter() - clock:.0f}s", flush=True)
            runs = [args.workers] if n != args.scaling_samples else sorted({1, args.workers})
            for w in runs:
                results.append(reweight(data, n, w, cfg, root))
                show(results[-1])
        print("\nsummary")
        for r in results:
            show(r)
        big = next(r for r in results if r["n"] == args.samples and r["workers"] == args.workers)
        ok = big["iteration_s"] <= 60 and big["peak_rss_total_gb"] <= 8
        print(
            f"acceptance (N={args.samples:,}, W={args.workers}): {big['iteration_s']:.1f} s per outer iteration "
            f"(<= 60), peak memory {big['peak_rss_total_gb']:.2f} GB (<= 8): {'PASS' if ok else 'FAIL'}"
        )
        scale = [r for r in results if r["n"] == args.scaling_samples]
        if len(scale) == 2:
            print(
                f"worker scaling at N={args.scaling_samples:,}: W=1 {scale[0]['samples_per_s']:,.0f} samples/s, "
                f"W={args.workers} {scale[1]['samples_per_s']:,.0f} samples/s "
                f"(x{scale[1]['samples_per_s'] / scale[0]['samples_per_s']:.2f}; 2 cores: read as overhead)"
            )


if __name__ == "__main__":
    main()
