"""What returning engine batches in prompt order costs: ``generate`` with the stream ordered (the
default, which makes the kept rows a function of the prompts alone) against Ray Data's unordered
output, same pool settings, vLLM replicas, ABBA order to cancel load drift, one process.

Prints each run's wall time, engine-window throughput and start-up, the ratios, and whether runs
of each arm kept the same rows (ordered runs must; unordered ones may not).

    python benchmarks/stream_order.py --samples 192 --replicas 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from sungen_ray.generation import pipeline
from sungen_ray.generation.config import GenerateConfig


def run(args, ordered: bool, out: Path) -> dict:
    cfg = GenerateConfig(
        task=args.task,
        num_samples=args.samples,
        out=str(out),
        engine=args.engine,
        replicas=args.replicas,
        batch_size=args.batch_size,
        seed=args.seed,
        ordered=ordered,
    )
    m = pipeline.generate(cfg)
    kept = pq.read_table(out / "data").select(["text", "label"]).to_pylist()
    return {
        "seconds": m["seconds"],
        "startup_seconds": m["startup_seconds"],
        "engine_seconds": m["engine_seconds"],
        "engine_tokens_per_s": m["engine_tokens_per_s"],
        "samples_per_s": m["samples_per_s"],
        "prompts_sent": m["prompts_sent"],
        "kept": sorted((r["label"], r["text"]) for r in kept),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--samples", type=int, default=192)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--engine", default="vllm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    runs: dict[str, list[dict]] = {"ordered": [], "unordered": []}
    tmp = Path(tempfile.mkdtemp(prefix="stream-order-"))
    try:
        for i, arm in enumerate(["ordered", "unordered", "unordered", "ordered"]):
            r = run(args, arm == "ordered", tmp / f"{i}-{arm}")
            runs[arm].append(r)
            print(
                f"[{arm}] {r['seconds']:.1f} s whole, start-up {r['startup_seconds']} s, "
                f"{r['engine_tokens_per_s']} engine tok/s, {r['samples_per_s']} samples/s, "
                f"{r['prompts_sent']} prompts",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def mean(arm: str, key: str) -> float:
        return sum(r[key] for r in runs[arm]) / len(runs[arm])

    print(f"\n== stream order: {args.task}, {args.samples} samples, {args.replicas} {args.engine} replicas, ABBA")
    for arm in runs:
        same = runs[arm][0]["kept"] == runs[arm][1]["kept"]
        print(
            f"{arm:9s}: {mean(arm, 'seconds'):.1f} s whole, {mean(arm, 'engine_tokens_per_s'):.1f} engine tok/s, "
            f"{mean(arm, 'samples_per_s'):.3f} samples/s; its two runs kept the same rows: {same}"
        )
    for key in ("seconds", "engine_tokens_per_s", "samples_per_s"):
        print(f"ratio ordered/unordered {key}: {mean('ordered', key) / mean('unordered', key):.3f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({arm: [{k: v for k, v in r.items() if k != "kept"} for r in rs] for arm, rs in runs.items()})
        )


if __name__ == "__main__":
    main()
