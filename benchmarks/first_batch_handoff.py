"""Where the first batch's hand-off goes: the seconds between a batch's last row finishing on a vLLM
replica and that batch reaching the driver, over three paths on the same replica.

- ``direct``: four concurrent batches sent to the replica actor and awaited with ``ray.get``;
- ``run_engine``: the same rows through the Ray Data stage of the pipeline (``from_items`` ->
  the ``ReplicaClient`` actor pool -> ``iter_batches`` in the driver), as the condition stage runs;
- ``generate``: a real ``generate`` call on the same replica (the lazy prompt range and its map
  stage, the driver's consume loop), read from its manifest's ``time_to_first_row``.

Printed per path: the hand-off of each batch (arrival minus the batch's last ``t_done``), and for
``generate`` the manifest's breakdown. One replica, started once, so the paths differ only in what
lies between the replica and the driver.

    python benchmarks/first_batch_handoff.py --samples 300
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


def _hand_offs(batches, t0: float) -> list[str]:
    out = []
    for batch in batches:
        if batch is None:  # a heartbeat
            continue
        now = time.time()
        done = np.asarray(batch["t_done"], dtype=np.float64)
        out.append(f"{now - np.nanmax(done):.2f} s (arrived {now - t0:.1f} s after start, {len(done)} rows)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=4, help="concurrent batches for direct and run_engine")
    parser.add_argument("--samples", type=int, default=300, help="num_samples of the generate path")
    args = parser.parse_args()

    import ray

    from sungen_ray.generation.config import GenerateConfig
    from sungen_ray.generation.engine_pool import EnginePool
    from sungen_ray.generation.engines import EngineOptions
    from sungen_ray.generation.pipeline import generate, run_engine
    from sungen_ray.parallel.ray_runtime import default_cpus_per_replica, ensure_ray
    from sungen_ray.plm.prepare import resolve_model
    from sungen_ray.tasks.spec import load_task

    spec = load_task(args.task)
    cpus = default_cpus_per_replica("vllm", 1)
    ensure_ray(min_cpus=cpus + 2)
    opts = EngineOptions(
        model=resolve_model(None), decoding=spec.decoding, replicas=1, batch_size=args.batch_size, cpus_per_replica=cpus
    )
    engines = EnginePool().use("vllm", opts)
    try:
        ray.get(engines.replicas[0].math_dtype.remote())  # the replica is up before any path is timed
        n = args.batch_size * args.batches

        def rows(base: int) -> list[dict]:
            return [
                {"row_id": base + i, "label": i % spec.num_labels, "label_name": spec.labels[i % spec.num_labels].name}
                | {"prompt": spec.labels[i % spec.num_labels].prompts[0]}
                for i in range(n)
            ]

        first = rows(0)
        t0 = time.time()
        calls = []
        for b in range(args.batches):
            part = first[b * args.batch_size : (b + 1) * args.batch_size]
            batch = {k: np.array([r[k] for r in part], dtype=object) for k in ("label_name", "prompt")}
            batch |= {k: np.array([r[k] for r in part], dtype=np.int64) for k in ("row_id", "label")}
            calls.append(engines.replicas[0].generate.remote(batch, "direct", spec.decoding, 0))

        def direct():
            pending = list(calls)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])

        for line in _hand_offs(direct(), t0):
            print(f"direct      hand-off {line}", flush=True)

        cfg = GenerateConfig(
            task=args.task, num_samples=n, out="unused", engine="vllm", batch_size=args.batch_size, batches_per_block=1
        )
        t0 = time.time()
        for line in _hand_offs(run_engine(cfg, opts, rows(10**6), engines=engines), t0):
            print(f"run_engine  hand-off {line}", flush=True)

        with tempfile.TemporaryDirectory() as out:
            cfg = GenerateConfig(
                task=args.task, num_samples=args.samples, out=out, engine="vllm", batch_size=args.batch_size, seed=0
            )
            manifest = generate(cfg, engines=engines)
            print(f"generate    time_to_first_row {json.dumps(manifest['time_to_first_row'])}", flush=True)
            print(f"generate    engine starts in the call: {manifest['engine_starts']}", flush=True)
    finally:
        engines.shutdown()


if __name__ == "__main__":
    main()
