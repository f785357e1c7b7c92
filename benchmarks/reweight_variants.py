"""Reweighting settings x ways to use the weights, on bank pools, in one process (issue 21).

For each pool and seed: reweight with the shipped defaults plus ``--cfg`` overrides, then fit the
demo's final model (logistic regression on frozen MiniLM features, L-BFGS, l2 0.01) on
- ``top50`` / ``top70``: the top fraction per label by weight, uniform;
- ``top50_w``: the top half trained with the weights as they are;
- ``top50_wbal``: the top half with the weights scaled per label (what ``select.weighted`` does);
- ``w_all_bal``: every row, weights scaled per label;
and, once per pool, ``all`` (ZeroGen) and ``channel50`` (the channel filter). Appends one JSON line
per pool to ``--out``; a finished reweighting in ``--work`` is reused.

    python benchmarks/reweight_variants.py --bank demo-sst2-1000 demo-sst2-1000-s{1..5} sst2-20000 \\
        --tag ep3 --cfg '{"inner_epochs": 3}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bank import bank_pool, default_gold

from sungen_ray.config import from_dict
from sungen_ray.curate.baselines import LR_TAM, pool_score_columns
from sungen_ray.curate.selection import SelectConfig, select, training_weights
from sungen_ray.curate.weights import read_weights
from sungen_ray.data.labelled import read_labelled, read_table
from sungen_ray.features.pool import attach_pool_features
from sungen_ray.reweight.api import reweight_pool
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.tam import final as final_model
from sungen_ray.tasks.spec import load_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", nargs="+", required=True, help="pools of the committed bank")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cfg", default="{}", help="reweighting overrides, JSON (tam defaults to minilm)")
    ap.add_argument("--tag", default="defaults", help="names this setting in the output")
    ap.add_argument("--l2", type=float, default=0.01, help="the final head's L2")
    ap.add_argument("--work", default="runs/reweight-variants")
    ap.add_argument("--out", default="runs/reweight-variants/results.jsonl")
    args = ap.parse_args()
    overrides = json.loads(args.cfg)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for name in args.bank:
        result = run_pool(name, args, overrides)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(result) + "\n")


def run_pool(name: str, args, overrides: dict) -> dict:
    data_dir, task = bank_pool(name)
    spec = load_task(task)
    gold = default_gold(task)
    pool = read_labelled(data_dir, num_labels=spec.num_labels)
    scores = pool_score_columns(read_table(data_dir))
    attach_pool_features(data_dir)
    texts, labels, idx = list(pool.text), np.asarray(pool.label, np.int64), np.asarray(pool.idx)
    final_cfg = from_dict(final_model.FinalConfig, {"tam": {**LR_TAM, "l2": args.l2}, "device": "cpu"}, "final")

    def accuracy(keep: np.ndarray, weights: np.ndarray | None = None) -> float:
        rows = np.flatnonzero(keep)
        trained = final_model.fit([texts[i] for i in rows], labels[rows], spec.label_names, final_cfg, weights)
        return final_model.evaluate(trained, gold)["accuracy"]

    def top(score: np.ndarray, fraction: float) -> np.ndarray:
        return select(score, labels, SelectConfig(mode="per_label_top", fraction=fraction))

    everything = np.ones(len(texts), dtype=bool)
    result = {"pool": name, "tag": args.tag, "cfg": overrides, "n": len(texts), "all": accuracy(everything)}
    margin = scores["channel_margin"].reindex(idx).to_numpy() if "channel_margin" in scores else None
    if margin is not None:
        result["channel50"] = accuracy(top(margin, 0.5))
        # each label's channel-consistent share, relative to the mean: a pool property, for top50_wagree
        agree = np.array([(margin[labels == k] > 0).mean() for k in range(spec.num_labels)])
        label_tilt = agree / agree.mean()
    for seed in args.seeds:
        cfg = from_dict(ReweightConfig, {"seed": seed, **({"tam": {"name": "minilm"}} | overrides)}, "reweight")
        start = time.perf_counter()
        out = reweight_pool(data_dir, Path(args.work) / name / args.tag / f"seed{seed}", cfg)
        w = read_weights(out, idx)
        metrics = json.loads((out / "metrics.json").read_text())
        half, most = top(w, 0.5), top(w, 0.7)
        r = {
            "reweight_s": round(time.perf_counter() - start, 1),
            "iterations": metrics["iterations_run"],
            "top50": accuracy(half),
            "top70": accuracy(most),
            "top50_w": accuracy(half, w[half]),
            "top50_wbal": accuracy(half, training_weights(w, labels, half)),
            "w_all_bal": accuracy(everything, training_weights(w, labels, everything)),
        }
        if margin is not None:  # per-label scaled, times the label's relative channel-consistent share
            r["top50_wagree"] = accuracy(half, training_weights(w, labels, half) * label_tilt[labels[half]])
        result[f"seed{seed}"] = r
        print(name, args.tag, seed, {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
    return result


if __name__ == "__main__":
    main()
