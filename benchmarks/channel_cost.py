"""Channel scoring of one generated pool on live vLLM replicas: every label prefilled, against the
other labels only with the own-label scores that came with generation (``plm.channel.OwnScore``).

Both ways score the same texts on the same replicas, alternating (ABBA over ``--repeats``) so load
drift cancels. Printed per run: seconds and texts/s; then the means, the ratio (own scores / every
label), the share of rows whose own score came with generation, and the largest difference between
the two ways' margins.

    python benchmarks/channel_cost.py runs/demo-sst2/pool/round-00 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "pool", type=Path, help="a generate --out directory made with vLLM (data/ and .channel_own.parquet)"
    )
    parser.add_argument("--task", default=None, help="the pool's task (default: from its manifest)")
    parser.add_argument("--repeats", type=int, default=2, help="ABBA pairs")
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from sungen_ray.generation.engine_pool import EnginePool
    from sungen_ray.generation.engines import EngineOptions
    from sungen_ray.parallel.ray_runtime import default_cpus_per_replica, ensure_ray
    from sungen_ray.plm.channel import channel_scores_on_engines, read_own_scores
    from sungen_ray.plm.prepare import resolve_model
    from sungen_ray.tasks.spec import load_task

    manifest = json.loads((args.pool / "manifest.json").read_text())
    spec = load_task(args.task or manifest["task"])
    model = resolve_model(None)
    table = pq.read_table(args.pool / "data")
    texts = table.column("text").to_pylist()
    labels = table.column("label").to_numpy().astype(np.int64)
    own = read_own_scores(args.pool)
    given = np.array([own.get(i, np.nan) for i in table.column("idx").to_pylist()], dtype=np.float64)
    print(f"{len(texts)} texts x {spec.num_labels} labels; own score from generation for {np.isfinite(given).sum()}")

    ensure_ray()
    cpus = default_cpus_per_replica("vllm", None)
    engines = EnginePool().use("vllm", EngineOptions(model=model, decoding=spec.decoding, cpus_per_replica=cpus))
    try:
        channel_scores_on_engines(texts[:8], spec, model, engines)  # engine start and warm-up, untimed
        seconds: dict[str, list[float]] = {"every label": [], "own scores": []}
        margins: dict[str, np.ndarray] = {}
        order = ["every label", "own scores", "own scores", "every label"] * args.repeats
        for way in order[: 2 * args.repeats]:
            clock = time.perf_counter()
            if way == "every label":
                result = channel_scores_on_engines(texts, spec, model, engines)
            else:
                result = channel_scores_on_engines(texts, spec, model, engines, labels=labels, own=given)
            took = time.perf_counter() - clock
            seconds[way].append(took)
            margins[way] = result.margin(labels)
            print(f"{way:12s} {took:7.1f} s  {len(texts) / took:6.1f} texts/s", flush=True)
    finally:
        engines.shutdown()
    a, b = np.mean(seconds["every label"]), np.mean(seconds["own scores"])
    diff = float(np.abs(margins["every label"] - margins["own scores"]).max())
    print(f"mean: every label {a:.1f} s, own scores {b:.1f} s, ratio {b / a:.3f}")
    print(
        f"rows with their own score from generation: {np.isfinite(given).mean():.3f}; largest margin difference {diff:.2e}"
    )


if __name__ == "__main__":
    main()
