"""Engine layout on one machine: K replicas x C CPUs each, timed as the demo uses them.

Each layout runs in its own process (its own Ray session) and generates the demo's two rounds
(``--samples`` per round, the second deduplicated against the first) with ``generate`` exactly as
the driver calls it, so engine start-up, prompt streaming, surplus and duplicates all count. Layouts
alternate (ABBA over ``--repeats``) so load drift cancels; printed per round: wall seconds, seconds
to the first output (engine start-up), engine tokens/s, kept samples/s over the whole round, prompts
sent and duplicates dropped, then each layout's mean and the ratio to the first layout.

    python benchmarks/generation_layout.py --layouts 2x1 1x2 --samples 500 --repeats 1

A layout ``RxC+proc`` runs vLLM's model worker in its own process (vLLM's CPU default) instead of
inside the engine core:

    python benchmarks/generation_layout.py --layouts 1x2+proc 1x2 --samples 500 --rounds 1 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path


def run_layout(layout: str, samples: int, rounds: int, root: str) -> list[dict]:
    import os

    from sungen_ray.data.labelled import read_labelled
    from sungen_ray.generation.config import GenerateConfig
    from sungen_ray.generation.engine_pool import WORKER_PROCESS_ENV
    from sungen_ray.generation.pipeline import generate

    shape, _, where = layout.partition("+")
    if where == "proc":  # vLLM's own CPU layout: the model worker in a process of its own
        os.environ[WORKER_PROCESS_ENV] = "1"
    replicas, cpus = (int(x) for x in shape.split("x"))
    seen: set[str] = set()
    out = []
    for r in range(rounds):
        cfg = GenerateConfig(
            task="sst2",
            num_samples=samples,
            out=f"{root}/{layout}-r{r}",
            engine="vllm",
            round=r,
            seed=r,
            replicas=replicas,
            cpus_per_replica=cpus,
        )
        clock = time.perf_counter()
        m = generate(cfg, existing_texts=seen)
        wall = time.perf_counter() - clock
        seen |= set(read_labelled(cfg.out).text)
        out.append(
            {
                "layout": layout,
                "round": r,
                "wall_s": wall,
                "first_output_s": m["startup_seconds"] or 0.0,
                "engine_tokens_per_s": m["engine_tokens_per_s"],
                "kept_per_s": m["kept"] / wall,
                "prompts": m["prompts_sent"],
                "duplicates": m["dropped"]["duplicate"],
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layouts", nargs="+", default=["2x1", "1x2"], help="REPLICASxCPUS each, +proc: worker process")
    ap.add_argument("--samples", type=int, default=500, help="samples per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    order = [lay for i in range(args.repeats) for lay in (args.layouts if i % 2 == 0 else args.layouts[::-1])]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as root:
        for n, layout in enumerate(order):
            with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh Ray session per layout
                result = pool.apply(run_layout, (layout, args.samples, args.rounds, f"{root}/{n}"))
            for r in result:
                print(
                    f"[{r['layout']} round {r['round']}] {r['wall_s']:.0f} s wall, first output after "
                    f"{r['first_output_s']:.0f} s, {r['engine_tokens_per_s']} engine tok/s, {r['kept_per_s']:.2f} "
                    f"kept/s, {r['prompts']} prompts, {r['duplicates']} duplicates",
                    flush=True,
                )
            rows += result
    print(f"\n== {args.rounds} rounds x {args.samples} sst2 samples, order {' '.join(order)}")
    base = None
    for layout in args.layouts:
        mine = [r for r in rows if r["layout"] == layout]
        runs = len(mine) / args.rounds
        wall = sum(r["wall_s"] for r in mine) / runs
        start = sum(r["first_output_s"] for r in mine) / runs
        dups = sum(r["duplicates"] for r in mine) / runs
        base = base or wall
        print(
            f"{layout}: generation {wall:.0f} s for all rounds (engine start-up {start:.0f} s of it), "
            f"{dups:.0f} duplicates; time / {args.layouts[0]}'s: {wall / base:.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
