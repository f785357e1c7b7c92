"""Seconds per outer iteration by phase for the reference / jvp / fd hypergradients, on the same
data and TAM, measured side by side in one process, with each fast form's cosine to the reference.

    python benchmarks/hypergrad_speed.py --gold ../shared/data/subj/all.jsonl --rows 6000 --tam bow
"""

from __future__ import annotations

import argparse

import torch

from sungen_ray.config import from_dict
from sungen_ray.data.labelled import read_labelled
from sungen_ray.parallel.collectives import LocalCollectives
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.reweight.loop import Shard, init_state, initial_model, outer_iteration
from sungen_ray.tam import build_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", required=True)
    ap.add_argument("--rows", type=int, default=6000)
    ap.add_argument("--tam", default="bow")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    gold = read_labelled(args.gold, min_labels=2)
    n = min(args.rows, len(gold))
    texts = gold.text[:n]
    methods = ["reference", "fd"] + (["jvp"] if args.tam != "lstm" else [])
    base = from_dict(ReweightConfig, {"tam": {"name": args.tam}, "outer_iters": 1, "stop_patience": 0})
    enc = build_encoder(base.tam, texts)
    shard = Shard(torch.from_numpy(gold.idx[:n]), torch.from_numpy(gold.label[:n]), enc.encode(texts), 2, enc)
    seconds, theta = {}, {}
    for _ in range(args.repeats):  # interleaved so machine load hits every method alike
        for method in methods:
            cfg = from_dict(ReweightConfig, {"tam": {"name": args.tam}, "hypergrad": method, "stop_patience": 0})
            model = initial_model(shard, cfg)
            phi0 = {k: v.clone() for k, v in model.state_dict().items()}
            state = init_state(n)
            # two iterations so the second one has non-uniform weights; time the second
            outer_iteration(shard, cfg, LocalCollectives(), state, model, phi0)
            m = outer_iteration(shard, cfg, LocalCollectives(), state, model, phi0)
            for phase, s in m["seconds"].items():
                seconds.setdefault(method, {}).setdefault(phase, []).append(s)
            theta[method] = state["theta"].clone()
    ref = min(seconds["reference"]["hypergrad"])
    print(f"tam {args.tam}, {n} samples, best of {args.repeats} (seconds per outer iteration by phase)")
    for method in methods:
        best = {p: min(v) for p, v in seconds[method].items()}
        cos = float(torch.nn.functional.cosine_similarity(theta[method], theta["reference"], 0))
        print(
            f"  {method:9s} "
            + " ".join(f"{p} {s:.3f}" for p, s in best.items())
            + f" | hypergrad speedup vs reference {ref / best['hypergrad']:.1f}x | cosine(theta) to reference {cos:.5f}"
        )


if __name__ == "__main__":
    main()
