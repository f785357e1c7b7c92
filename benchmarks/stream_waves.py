"""What a round's Ray Data stream costs beyond decoding the rows it keeps: a real ``generate`` call
on one warm vLLM replica, each engine batch's timeline tapped as it reaches the driver, run once
without the driver's row limit (``generation/row_limit.py``: every batch the stream hands a replica
is decoded) and once with it, then the same batches the driver read sent straight to the replica
actor, four in flight, refilled as each returns.

Printed per path: every batch's submit, finish (its last row's ``t_done``) and arrival at the
driver, in seconds from the call's start, and the whole time; then the ratios. The stream's extra
time is what lies outside the engine's work on those rows: batches decoded for the stream's end
that never reach the driver (the driver stops once every label is full), which the row limit holds
back. The two streams must keep the same pool (the run stops if not).

    python benchmarks/stream_waves.py --samples 500 --repeats 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq


def _batch_times(batch: dict) -> tuple:
    """(first row id, first submit, last finish, arrival now, tokens) of one engine batch."""
    submit, finish = float(np.nanmin(batch["t_submit"])), float(np.nanmax(batch["t_done"]))
    tokens = int(np.sum(batch["num_generated_tokens"]))
    return int(np.min(batch["row_id"])), submit, finish, time.time(), tokens


def _timeline(name: str, batches: list[tuple], t0: float, t1: float) -> None:
    print(f"{name}: {t1 - t0:.1f} s, {len(batches)} batches reached the driver", flush=True)
    for row, submit, done, arrived, _ in sorted(batches):
        print(f"  rows {row:5d}+  submit {submit - t0:6.2f}  finish {done - t0:6.2f}  arrive {arrived - t0:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2, help="stream / direct pairs, alternating")
    args = parser.parse_args()

    import ray

    import sungen_ray.generation.pipeline as pipeline
    from sungen_ray.generation.config import GenerateConfig
    from sungen_ray.generation.engine_pool import EnginePool
    from sungen_ray.parallel.ray_runtime import ensure_ray

    ensure_ray()
    engines = EnginePool()
    timeline: list[tuple] = []  # _batch_times of every batch the driver read
    read: list[dict] = []  # those batches' rows, to send straight to the replica
    stream_engine = pipeline.stream_engine

    def tapped(*a, **k):
        batches, stream = stream_engine(*a, **k)

        def read_all():
            try:
                for batch in batches:
                    if batch is not None and "t_submit" in batch:
                        timeline.append(_batch_times(batch))
                        read.append({k: np.asarray(batch[k]) for k in ("row_id", "label", "label_name", "prompt")})
                    yield batch
            finally:
                batches.close()

        return read_all(), stream

    pipeline.stream_engine = tapped
    seeds: list[int] = []
    stage = engines.stage

    def stage_seed(ds, decoding, seed, *a, **k):
        seeds.append(seed)
        return stage(ds, decoding, seed, *a, **k)

    engines.stage = stage_seed
    set_limit = engines.set_limit

    def via_stream(seed: int, limit: bool) -> tuple[float, int, list]:
        timeline.clear()
        read.clear()
        engines.set_limit = set_limit if limit else lambda stream, row: None
        with tempfile.TemporaryDirectory() as out:
            cfg = GenerateConfig(task=args.task, num_samples=args.samples, out=f"{out}/pool", seed=seed)
            t0 = time.time()
            manifest = pipeline.generate(cfg, engines=engines)
            t1 = time.time()
            pool = pq.read_table(f"{out}/pool/data", columns=["text", "label"]).to_pylist()
        _timeline("stream" if limit else "stream, no row limit", timeline, t0, t1)
        ends = manifest["stream_end_rows"]
        print(f"  when the stream ended: {ends['aborted']} rows aborted mid-decode, {ends['held']} held back")
        return t1 - t0, sum(b[-1] for b in timeline), pool

    def direct(batches: list[dict], seed: int, decoding) -> tuple[float, int]:
        replica, rows = engines.replicas[0], []
        t0 = time.time()
        pending: list = []
        todo = list(batches)
        while todo or pending:
            while todo and len(pending) < 4:
                pending.append(replica.generate.remote(todo.pop(0), "direct", decoding, seed))
            done, pending = ray.wait(pending, num_returns=1)
            rows.append(_batch_times(ray.get(done[0])))
        t1 = time.time()
        _timeline("direct", rows, t0, t1)
        return t1 - t0, sum(r[-1] for r in rows)

    try:
        via_stream(10**3, limit=True)  # engine start and warm-up, untimed
        times: dict[str, list[float]] = {"no_limit": [], "stream": [], "direct": []}
        for _ in range(args.repeats):
            seconds, _, unlimited_pool = via_stream(0, limit=False)
            times["no_limit"].append(seconds)
            seconds, stream_tokens, pool = via_stream(0, limit=True)
            times["stream"].append(seconds)
            if pool != unlimited_pool:
                raise SystemExit("the row limit changed the pool: the two streams kept different rows")
            batches = sorted(read, key=lambda b: int(b["row_id"][0]))
            seconds, direct_tokens = direct(batches, seeds[-1], engines.opts.decoding)
            times["direct"].append(seconds)
            same = (
                "same tokens"
                if stream_tokens == direct_tokens
                else f"tokens differ ({stream_tokens} vs {direct_tokens})"
            )
            print(
                f"repeat: stream without row limit {times['no_limit'][-1]:.1f} s, with it {times['stream'][-1]:.1f} s "
                f"(same pool), direct {seconds:.1f} s over the same rows, {same}"
            )
        n, s, d = (np.mean(times[k]) for k in ("no_limit", "stream", "direct"))
        print(
            f"mean: stream without row limit {n:.1f} s, with it {s:.1f} s, direct {d:.1f} s; "
            f"ratios: with / without {s / n:.3f}, with / direct {s / d:.3f}, without / direct {n / d:.3f}"
        )
    finally:
        engines.shutdown()


if __name__ == "__main__":
    main()
