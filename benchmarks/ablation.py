"""Which of the reweighting's defaults earn their place: one variant per row on one generated pool.

Every row reweights the same pool (in this process, ``reweight_pool``), selects, trains the same
final TAM on what it kept and scores it on a gold set; 3 seeds each (the seed varies reweighting
and final training, not the pool). Rows (``--rows`` picks a subset):

- ``defaults``: the defaults the ablation started from (per-label top 70%; it moved selection to
  ``top50``'s 50%);
- ``reference``: the public reference code's setting: no early stop, 100 outer iterations,
  no centring, no outer label balance, final training on every sample weighted by w;
- one deviation switched at a time: ``no_stop``, ``center_global``, ``center_none``,
  ``no_outer_balance``, ``tau_per_label``, ``fixed_inner_order``;
- final selection on the defaults' weights: ``top50``, ``top90``, ``threshold05``, ``weighted_all``;
- a second pass, combining the single changes that helped on both tasks: ``center_none_top50``,
  ``tau_top50``, ``none_tau_top50``, ``none_tau_nobal_top50``, ``reference_top50``;
- ``ensemble3_top50``: the mean weight of 3 default reweighting runs (seeds 3s, 3s+1, 3s+2 for row
  seed s), then top 50%: whether averaging out the reweighting's seed (the spread measured on
  dbpedia) helps;
- two hybrids of the weights with the confidence filter's signal (a TAM trained on every sample,
  uniform), after confidence-TAM beat SunGen on dbpedia: ``rank_mean_top50`` keeps the top 50% per
  label by the mean of the two per-label ranks, ``agree_top50`` the top 50% by weight among the
  samples that TAM assigns to their own label (then the others, by weight, if too few agree).

Rows that share a reweighting config share its run (the selection rows reuse ``defaults``).
Printed per row: train size, accuracy and macro-F1 (mean ± std over seeds), outer iterations.
No gold data enters the method: the gold set only scores the rows.

    python benchmarks/ablation.py --pool /work/pools/sst2-20k --task sst2 \\
        --gold ../shared/data/sst2/validation.jsonl --tam minilm --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bank import DEFAULT_POOL, bank_pool, default_gold

from sungen_ray.config import config_hash, from_dict
from sungen_ray.curate.baselines import tam_probabilities
from sungen_ray.curate.selection import SelectConfig, select, training_weights
from sungen_ray.curate.weights import read_weights
from sungen_ray.data.atomic import read_json
from sungen_ray.data.labelled import read_labelled
from sungen_ray.features.pool import attach_pool_features
from sungen_ray.reweight.api import reweight_pool
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.tam import final as final_model
from sungen_ray.tasks.spec import load_task

# unweighted fits, as when these rows were measured (the shipped selection now trains weighted)
TOP70 = {"mode": "per_label_top", "fraction": 0.7, "weighted": False}
TOP50 = {"mode": "per_label_top", "fraction": 0.5, "weighted": False}
REFERENCE = {"stop_patience": 0, "outer_iters": 100, "center": "none", "outer_balance": False}
# row -> (reweighting overrides, selection)
ROWS: dict[str, tuple[dict, dict]] = {
    "defaults": ({}, TOP70),
    "reference": (REFERENCE, {"mode": "all", "weighted": True}),
    "no_stop": ({"stop_patience": 0}, TOP70),
    "center_global": ({"center": "global"}, TOP70),
    "center_none": ({"center": "none"}, TOP70),
    "no_outer_balance": ({"outer_balance": False}, TOP70),
    "tau_per_label": ({"tau_per_label": True}, TOP70),
    "fixed_inner_order": ({"fixed_inner_order": True}, TOP70),
    "top50": ({}, TOP50),
    "top90": ({}, {"mode": "per_label_top", "fraction": 0.9, "weighted": False}),
    "threshold05": ({}, {"mode": "threshold", "threshold": 0.5, "weighted": False}),
    "weighted_all": ({}, {"mode": "all", "weighted": True}),
    # combinations of the single changes that helped on both tasks (second pass, same pools)
    "center_none_top50": ({"center": "none"}, TOP50),
    "none_tau_top50": ({"center": "none", "tau_per_label": True}, TOP50),
    "none_tau_nobal_top50": ({"center": "none", "tau_per_label": True, "outer_balance": False}, TOP50),
    "tau_top50": ({"tau_per_label": True}, TOP50),
    "reference_top50": (REFERENCE, TOP50),
    "ensemble3_top50": ({}, TOP50),
    "rank_mean_top50": ({}, TOP50),
    "agree_top50": ({}, TOP50),
}
ENSEMBLE = {"ensemble3_top50": 3}  # row -> reweighting runs averaged
HYBRID = ("rank_mean_top50", "agree_top50")  # rows whose selection score mixes in TAM confidence


def per_label_rank(score: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank within each label scaled to (0, 1], so labels of different sizes weigh alike."""
    out = np.zeros(len(score))
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        out[rows[np.argsort(score[rows], kind="stable")]] = np.arange(1, len(rows) + 1) / len(rows)
    return out


def hybrid_score(row: str, weights: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if row == "rank_mean_top50":
        own = probs[np.arange(len(labels)), labels]
        return per_label_rank(weights, labels) + per_label_rank(own, labels)
    agrees = probs.argmax(1) == labels
    return weights + 2.0 * agrees  # weights lie in [0, 1]: every agreeing sample ranks first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", help="a generated pool (sungen-ray generate --out DIR) instead of --bank")
    ap.add_argument("--bank", default=DEFAULT_POOL, help="a pool of the committed bank (benchmarks/pools/NAME)")
    ap.add_argument("--task", help="(default: the bank pool's; required with --pool)")
    ap.add_argument("--gold", help="(default: the task's file in ../shared/data)")
    ap.add_argument("--tam", default="minilm", choices=["bow", "lstm", "minilm"])
    ap.add_argument("--final-tam", default=None, help="final TAM (default: --tam)")
    ap.add_argument("--epochs", type=int, default=5, help="final TAM epochs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--work", default="runs/ablation", help="reweighting outputs (re-runs reuse them)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    if args.pool:
        if not args.task:
            raise SystemExit("--pool needs --task")
        data_dir = Path(args.pool) / "data"
    else:
        data_dir, args.task = bank_pool(args.bank)
    args.gold = args.gold or default_gold(args.task)
    spec = load_task(args.task)
    pool = read_labelled(data_dir, num_labels=spec.num_labels)
    print(f"pool: {len(pool)} samples of {args.task} from {data_dir}; rows {args.rows}; seeds {args.seeds}", flush=True)
    attach_pool_features(data_dir)  # MiniLM features stored once beside the pool; every fit below reads them
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:
        probs = None  # the confidence TAM's, fit once per seed for the hybrid rows
        for row in args.rows:
            overrides, selection = ROWS[row]
            k = ENSEMBLE.get(row, 1)
            key = config_hash(overrides)[:12]  # rows with the same overrides share the run
            clock = time.perf_counter()
            runs = []
            for rw_seed in range(seed * k, seed * k + k):  # k = 1: the row's own seed
                rw_cfg = from_dict(
                    ReweightConfig, {"tam": {"name": args.tam}, "seed": rw_seed, **overrides}, "reweight"
                )
                rw_dir = reweight_pool(
                    data_dir, Path(args.work) / args.task / args.tam / f"seed{rw_seed}-{key}", rw_cfg
                )
                runs.append((read_json(rw_dir / "metrics.json")["iterations_run"], read_weights(rw_dir, pool.idx)))
            rw_s = time.perf_counter() - clock
            iters = max(i for i, _ in runs)
            weights = np.mean([w for _, w in runs], axis=0)
            final_cfg = from_dict(
                final_model.FinalConfig,
                {"tam": {"name": args.final_tam or args.tam}, "epochs": args.epochs, "seed": seed},
                "final",
            )
            score = weights
            if row in HYBRID:
                if probs is None:
                    conf_cfg = from_dict(
                        final_model.FinalConfig, {"tam": {"name": args.tam}, "epochs": args.epochs, "seed": seed}
                    )
                    probs = tam_probabilities(pool.text, pool.label, spec, conf_cfg)
                score = hybrid_score(row, weights, probs, pool.label)
            sel = from_dict(SelectConfig, selection, "select")
            keep = select(score, pool.label, sel)
            rows = np.flatnonzero(keep)
            trained = final_model.fit(
                [pool.text[i] for i in rows],
                pool.label[rows],
                spec.label_names,
                final_cfg,
                training_weights(weights, pool.label, keep) if sel.weighted else None,
            )
            scores = final_model.evaluate(trained, args.gold)
            r = {"n": len(rows), "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "iters": iters}
            results.setdefault(row, []).append(r)
            print(
                f"seed {seed} {row:18s} n={len(rows):6d} accuracy {r['accuracy']:.4f} macro-F1 {r['macro_f1']:.4f} "
                f"({iters} outer iterations, reweighting {rw_s:.0f} s)",
                flush=True,
            )

    print(f"\n== ablation: {args.task}, {len(pool)} samples, TAM {args.tam}, seeds {args.seeds}, gold {args.gold}")
    print("| row | train size | accuracy | macro-F1 | outer iterations |")
    print("|---|---|---|---|---|")
    summary = {}
    for row in args.rows:
        rs = results[row]
        acc, f1 = np.array([r["accuracy"] for r in rs]), np.array([r["macro_f1"] for r in rs])
        summary[row] = {"accuracy": acc.tolist(), "macro_f1": f1.tolist(), "n": rs[0]["n"]}
        iters = sorted({r["iters"] for r in rs})
        print(
            f"| {row} | {rs[0]['n']} | {acc.mean():.4f} ± {acc.std():.4f} | {f1.mean():.4f} ± {f1.std():.4f} | "
            f"{'-'.join(str(i) for i in (iters[0], iters[-1])) if len(iters) > 1 else iters[0]} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
