"""Reweighting at a million samples: seconds per outer iteration by phase, samples/s, peak host
RSS of all processes (split into driver, Ray Train workers and Ray's own processes; and PSS, which
counts pages shared between processes once) and peak GPU memory, for the sparse bag-of-words step beside the old dense one.

The pool is synthesised from gold texts (every --gold file, labels offset so tasks do not collide)
with light perturbation (word drops, adjacent swaps, duplications) and a share of flipped labels,
written as Parquet in a temp dir (by a child process, so the driver's memory is the run's), then
reweighted exactly as ``sungen-ray reweight`` would: ``--workers 1`` in this process without Ray
(runs where only torch, numpy, pyarrow and pyyaml are installed, e.g. on a GPU machine with
``--device cuda``), ``--workers W`` on W Ray Train workers (``--device cuda``: one GPU each).

    python benchmarks/reweight_scale.py --samples 1000000 --workers 2
    python benchmarks/reweight_scale.py --samples 10000000 --workers 1 --device cuda --no-dense
    python benchmarks/reweight_scale.py --samples 1000000 --workers 1 --device cuda --tam lstm --no-dense
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sungen_ray.config import from_dict
from sungen_ray.data.atomic import read_json
from sungen_ray.data.labelled import read_labelled
from sungen_ray.reweight.api import reweight_pool
from sungen_ray.reweight.config import ReweightConfig

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


def _process_name(p) -> str:
    """A short name for a process in the at-peak breakdown (Ray sets actor titles like ``ray::Name``)."""
    cmd = p.cmdline()
    if cmd and cmd[0].startswith("ray::"):
        return cmd[0].split()[0]
    return (p.name() or "?")[:32]


def _memory_of_tree(pss: bool = True, tree: bool = True) -> dict:
    """Memory of this process and all its descendants (Ray's raylet, GCS, Train controller and
    workers are children here): summed RSS, the same split into this process (the driver), the Ray
    Train workers and the rest (Ray's own processes), RSS by process name, and (``pss``) summed PSS
    (shared pages, e.g. libtorch mapped by every torch process, counted once overall instead of once
    per process). PSS walks every mapping of every process (~1 ms each in the kernel), so the sampler
    asks for it less often than RSS. ``tree=False``: this process alone (a one-process run after a
    Ray row, whose idle cluster would otherwise be counted). psutil comes with Ray; without it (the
    one-process path on a machine without Ray) /proc gives this process."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return {"total": rss, "driver": rss, "workers": 0, "pss": rss, "by_name": {"driver": rss}}
    me = psutil.Process()
    out = {"total": 0, "driver": 0, "workers": 0, "pss": 0, "by_name": {}}
    for p in [me, *(me.children(recursive=True) if tree else [])]:
        try:
            rss = p.memory_info().rss
            name = "driver" if p.pid == me.pid else _process_name(p)
            if pss:
                out["pss"] += getattr(p.memory_full_info(), "pss", rss)
        except psutil.Error:
            continue
        out["total"] += rss
        out["by_name"][name] = out["by_name"].get(name, 0) + rss
        if p.pid == me.pid:
            out["driver"] += rss
        elif "RayTrainWorker" in name:
            out["workers"] += rss
    return out


class PeakMemory:
    """Peaks of ``_memory_of_tree``: RSS sampled every 0.2 s, PSS every 2 s (it is costly; see
    ``_memory_of_tree``: sampling it every 0.2 s took ~15% of a core from the measured run). ``at_peak``:
    the split at the moment of the RSS peak."""

    def __init__(self, tree: bool = True):
        self.tree = tree
        self.total = self.workers = self.pss = 0
        self.at_peak = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        tick = 0
        while not self._stop.wait(0.2):
            mem = _memory_of_tree(pss=tick % 10 == 0, tree=self.tree)
            tick += 1
            if mem["total"] > self.total:
                self.total, self.at_peak = mem["total"], mem
            self.workers, self.pss = max(self.workers, mem["workers"]), max(self.pss, mem["pss"])


def reweight(data: Path, n: int, workers: int, cfg: ReweightConfig, device: str, root: Path, label: str) -> dict:
    out = root / f"out-n{n}-w{workers}-{label}"
    gpu = device != "cpu" and torch.cuda.is_available()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    clock = time.perf_counter()
    with PeakMemory(tree=workers > 1) as rss:
        if workers == 1:
            cfg.device = device
            reweight_pool(data, out, cfg, workers=1)  # this process, no Ray
        else:
            from sungen_ray.reweight.distributed import run_distributed  # imports Ray lazily

            run_distributed(data, out, cfg, workers=workers, use_gpu=device != "cpu", max_failures=0)
    wall = time.perf_counter() - clock
    iters = read_json(out / "metrics.json")["iterations"]
    last = iters[-1]  # the first iteration also pays one-off warm-up
    secs = sum(last["seconds"].values())
    return {
        "step": label,
        "n": n,
        "workers": workers,
        "device": device,
        "phases": {k: last["seconds"][k] for k in PHASES},
        "first_iteration_s": sum(iters[0]["seconds"].values()),
        "iteration_s": secs,
        "samples_per_s": n / secs,
        "wall_s": wall,
        "peak_rss_total_gb": rss.total / 1e9,
        "peak_rss_workers_gb": rss.workers / 1e9,
        "peak_pss_total_gb": rss.pss / 1e9,
        "rss_at_peak_gb": {k: v / 1e9 for k, v in rss.at_peak.items() if k != "by_name"},
        "rss_at_peak_by_process_gb": {k: v / 1e9 for k, v in rss.at_peak.get("by_name", {}).items()},
        # this process only: Ray Train workers' GPU memory is not visible here
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1e9 if gpu and workers == 1 else None,
    }


def show(r: dict) -> None:
    ph = " ".join(f"{k} {v:.2f}s" for k, v in r["phases"].items())
    gpu = f"{r['peak_gpu_gb']:.2f} GB" if r["peak_gpu_gb"] is not None else "n/a"
    workers = f"Ray Train workers {r['peak_rss_workers_gb']:.2f} GB, " if r["workers"] > 1 else ""
    split = r["rss_at_peak_gb"]
    if r["workers"] > 1 and split:
        rest = split["total"] - split["driver"] - split["workers"]
        workers += (
            f"at the peak: driver {split['driver']:.2f} + workers {split['workers']:.2f} + Ray's own {rest:.2f} GB, "
        )
    by_name = sorted(r["rss_at_peak_by_process_gb"].items(), key=lambda kv: -kv[1])
    if r["workers"] > 1:
        workers += "by process: " + ", ".join(f"{k} {v:.2f}" for k, v in by_name) + " GB | "
    print(
        f"{r['step']:>6} N={r['n']:>10,} W={r['workers']} {r['device']}: {r['iteration_s']:.2f} s/outer iteration "
        f"({ph}) | {r['samples_per_s']:,.0f} samples/s | first iteration {r['first_iteration_s']:.2f}s | "
        f"peak RSS {workers}all processes {r['peak_rss_total_gb']:.2f} GB (PSS {r['peak_pss_total_gb']:.2f} GB) | "
        f"peak GPU {gpu} | wall {r['wall_s']:.0f}s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2, help="1 = this process without Ray")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (W > 1: one GPU per Ray Train worker)")
    ap.add_argument("--tam", choices=["bow", "lstm", "minilm"], default="bow")
    ap.add_argument("--no-dense", action="store_true", help="skip the old dense bow step row")
    ap.add_argument(
        "--compare-workers",
        type=int,
        default=0,
        help="a further row: the same step on this many workers (e.g. 1 beside --workers 2 on one machine)",
    )
    ap.add_argument("--small", type=int, default=0, help="a second size, to show growth with N (0 = skip)")
    ap.add_argument("--iters", type=int, default=2, help="outer iterations per run (the last one is reported)")
    ap.add_argument("--gold", nargs="+", type=Path, default=[p for p in DEFAULT_GOLD if p.is_file()])
    ap.add_argument("--flip", type=float, default=0.2)
    ap.add_argument(
        "--config",
        type=json.loads,
        default={"tam": {"batch_size": 4096}},
        help="ReweightConfig fields as JSON (default: inner batch 4096; bow keeps its 2^18 buckets)",
    )
    ap.add_argument("--tmp", default=None, help="where to write the pool and outputs (default: a temp dir)")
    args = ap.parse_args()
    base = {"outer_iters": args.iters, "stop_patience": 0, **args.config}
    base["tam"] = {**base.get("tam", {}), "name": args.tam}
    main_step = "sparse" if args.tam == "bow" else args.tam
    steps = [(main_step, base, args.workers)]
    if args.tam == "bow" and not args.no_dense:
        steps.append(("dense", {**base, "tam": {**base["tam"], "sparse": False}}, args.workers))
    if args.compare_workers:
        steps.append((main_step, base, args.compare_workers))
    print(f"config: {json.dumps(base)}, {args.iters} outer iterations, gold {[str(g) for g in args.gold]}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)

    if args.tmp:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        results = []
        for n in sorted({args.samples, args.small} - {0}):
            data = root / f"pool-{n}"
            data.mkdir()
            clock = time.perf_counter()
            with multiprocessing.get_context("spawn").Pool(1) as pool:  # its memory leaves with it
                pool.apply(synthesise, (args.gold, n, args.flip, 0, data / "pool.parquet"))
            print(f"synthesised {n:,} rows in {time.perf_counter() - clock:.0f}s", flush=True)
            for label, fields, workers in steps:
                results.append(reweight(data, n, workers, from_dict(ReweightConfig, fields), args.device, root, label))
                show(results[-1])
        print(f"\nsummary (load average at the end {os.getloadavg()})")
        for r in results:
            show(r)
        big = {r["step"]: r for r in results if r["n"] == args.samples and r["workers"] == args.workers}
        other = [r for r in results if r["n"] == args.samples and r["workers"] == args.compare_workers]
        if other:
            print(
                f"W={args.compare_workers} / W={args.workers} at N={args.samples:,}: "
                f"x{other[0]['iteration_s'] / big[main_step]['iteration_s']:.2f} time per outer iteration, "
                f"x{other[0]['peak_rss_total_gb'] / big[main_step]['peak_rss_total_gb']:.2f} peak RSS"
            )
        if "dense" in big:
            print(
                f"dense / sparse bow step at N={args.samples:,}, W={args.workers}: "
                f"x{big['dense']['iteration_s'] / big['sparse']['iteration_s']:.1f} per outer iteration, "
                f"inner phase x{big['dense']['phases']['inner'] / big['sparse']['phases']['inner']:.1f}"
            )
        if args.tam == "bow" and args.device == "cpu":
            r = big["sparse"]
            ok = r["iteration_s"] <= 8 and r["peak_rss_total_gb"] <= 4
            print(
                f"acceptance (N={args.samples:,}, W={args.workers}, bow): {r['iteration_s']:.1f} s per outer "
                f"iteration (<= 8), peak RSS of all processes {r['peak_rss_total_gb']:.2f} GB (<= 4; PSS "
                f"{r['peak_pss_total_gb']:.2f} GB): "
                f"{'PASS' if ok else 'FAIL'}"
            )


if __name__ == "__main__":
    main()
