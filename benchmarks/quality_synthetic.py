"""Quality on real synthetic data: SunGen vs ZeroGen vs confidence filtering, gold accuracy.

Generates (once; re-runs reuse it) a pool of SmolLM2-written sst2 samples, then for each seed:
reweights the pool, keeps the top fraction per label, trains the final TAM, and trains the
baselines on the same pool with the same TAM and seed (each keeping the same per-label fraction).
Prints mean and spread over seeds of the accuracy on the gold set.

Every fit's scores are kept in ``--work`` (JSON, keyed by seed, variant and the settings that change
it), so an interrupted or partial run (``--variants``) resumes where it stopped: the minilm-ft table
takes hours on a CPU and can be built over several runs.

    python benchmarks/quality_synthetic.py                       # the bank's demo pool, SST-2 dev
    python benchmarks/quality_synthetic.py --bank demo-sst2-1000-s3 --final-tam lr
    python benchmarks/quality_synthetic.py --gold ../shared/data/sst2/validation.jsonl \\
        --pool runs/quality-sst2-pool --num-samples 20000 --replicas 2 --tam minilm --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bank import DEFAULT_POOL, bank_pool, default_gold

from sungen_ray.config import from_dict
from sungen_ray.curate.baselines import LR_TAM, pool_score_columns, training_sets
from sungen_ray.curate.selection import SelectConfig, select
from sungen_ray.curate.weights import ranked_by_label, read_weights
from sungen_ray.data.atomic import write_json
from sungen_ray.data.labelled import read_labelled, read_table
from sungen_ray.features.pool import attach_pool_features
from sungen_ray.generation.config import GenerateConfig
from sungen_ray.generation.pipeline import generate
from sungen_ray.reweight.api import reweight_pool
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.tam import final as final_model
from sungen_ray.tasks.spec import load_task

VARIANTS = ("sungen", "zerogen", "confidence_tam", "confidence_plm", "confidence_channel", "confidence_lr", "cleanlab")
WORK_DEFAULT = "runs/quality-sst2-work"
# "lr": logistic regression on frozen MiniLM features, fitted to convergence (the demo's final model)
TAM_SETTINGS = {"lr": LR_TAM}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", help="(default: the task's file in ../shared/data)")
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--pool", help="a pool to generate once (with --num-samples) and reuse, instead of --bank")
    ap.add_argument(
        "--bank", default=DEFAULT_POOL, help="a pool of the committed bank (benchmarks/pools/NAME); sets --task"
    )
    ap.add_argument("--num-samples", type=int, default=20000)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--tam", default="minilm", choices=["bow", "lstm", "minilm"], help="the reweighting's TAM")
    ap.add_argument(
        "--final-tam", default=None, choices=["bow", "lstm", "minilm", "minilm-ft", "lr"], help="(default: --tam)"
    )
    ap.add_argument(
        "--filter-tam",
        default=None,
        choices=["bow", "lstm", "minilm", "minilm-ft", "lr"],
        help="the TAM the confidence and cleanlab filters score with (default: the final TAM)",
    )
    ap.add_argument(
        "--variants", nargs="+", default=None, choices=VARIANTS, help="rows to fit, in order (default: all)"
    )
    ap.add_argument(
        "--existing-pool", action="store_true", help="--pool was generated already (e.g. by sungen-ray generate)"
    )
    ap.add_argument(
        "--cleanlab", action="store_true", help="add the cleanlab-filtered baseline (pip install -e .[bench])"
    )
    ap.add_argument("--fraction", type=float, default=SelectConfig.fraction, help="(default: the shipped selection's)")
    ap.add_argument(
        "--weighted",
        action=argparse.BooleanOptionalAction,
        default=SelectConfig.weighted,
        help="SunGen trains with its kept samples' weights (default: the shipped selection's)",
    )
    ap.add_argument("--outer-iters", type=int, default=None, help="(default: the shipped ReweightConfig's)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", default=WORK_DEFAULT)
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument(
        "--examples", type=int, default=0, help="print each label's N highest- and lowest-weighted texts (first seed)"
    )
    args = ap.parse_args()

    if not args.pool:
        data_dir, args.task = bank_pool(args.bank)
        args.existing_pool = True
        if args.work == WORK_DEFAULT:  # the fit cache is per pool
            args.work = f"runs/quality-{args.bank}"
    else:
        data_dir = Path(args.pool) / "data"
    args.gold = args.gold or default_gold(args.task)
    spec = load_task(args.task)
    if not args.existing_pool:
        generate(GenerateConfig(task=args.task, num_samples=args.num_samples, out=args.pool, replicas=args.replicas))
    pool = read_labelled(data_dir, num_labels=spec.num_labels)
    pool_scores = pool_score_columns(read_table(data_dir))
    print(f"pool: {len(pool)} samples from {data_dir}")
    attach_pool_features(data_dir)  # MiniLM features stored once beside the pool; every fit below reads them

    final_tam = args.final_tam or args.tam
    filter_tam = args.filter_tam or final_tam
    variants = args.variants or [v for v in VARIANTS if v != "cleanlab" or args.cleanlab]
    results: dict[str, list[float]] = {}
    f1s: dict[str, list[float]] = {}
    class_f1s: dict[str, list[dict[str, float]]] = {}
    sizes: dict[str, int] = {}
    for seed in args.seeds:
        overrides = {} if args.outer_iters is None else {"outer_iters": args.outer_iters}
        rw_cfg = from_dict(ReweightConfig, {"tam": {"name": args.tam}, "seed": seed, **overrides}, "reweight")
        t0 = time.perf_counter()
        rw_dir = reweight_pool(data_dir, Path(args.work) / f"reweight-{args.tam}-seed{seed}", rw_cfg)
        rw_s = time.perf_counter() - t0
        weights = read_weights(rw_dir, pool.idx)
        if args.examples and seed == args.seeds[0]:
            show_ranked(pool, weights, spec.label_names, args.examples)
        keep = select(weights, pool.label, SelectConfig(mode="per_label_top", fraction=args.fraction))
        table = pd.DataFrame({"idx": pool.idx, "text": pool.text, "label": pool.label, "weight": weights, "keep": keep})
        final_cfg = from_dict(
            final_model.FinalConfig,
            {"tam": TAM_SETTINGS.get(final_tam, {"name": final_tam}), "epochs": args.epochs, "seed": seed},
        )
        filter_cfg = from_dict(
            final_model.FinalConfig,
            {"tam": TAM_SETTINGS.get(filter_tam, {"name": filter_tam}), "epochs": args.epochs, "seed": seed},
        )
        for variant in variants:
            kept = (
                Path(args.work)
                / "fits"
                / (
                    f"seed{seed}-{variant}-rw-{args.tam}-it{args.outer_iters}-keep{args.fraction}"
                    f"-final-{final_tam}-e{args.epochs}-filter-{filter_tam}{'-weighted' if args.weighted else ''}.json"
                )
            )
            if kept.is_file():
                fit = json.loads(kept.read_text())
                print(f"seed {seed} {variant:15s} kept from {kept}")
            else:
                baselines = [] if variant == "sungen" else [variant]
                sets = training_sets(table, pool_scores, baselines, args.weighted, spec, filter_cfg)
                if variant not in sets:  # e.g. confidence_plm on a pool without log-probs (said why)
                    continue
                texts, labels, w, _info = sets[variant]
                t1 = time.perf_counter()
                trained = final_model.fit(texts, labels, spec.label_names, final_cfg, w)
                scores = final_model.evaluate(trained, args.gold)
                fit = {
                    "accuracy": scores["accuracy"],
                    "macro_f1": scores["macro_f1"],
                    "per_class_f1": {k: c["f1"] for k, c in scores["per_class"].items()},
                    "n": len(texts),
                    "fit_s": time.perf_counter() - t1,
                }
                write_json(kept, fit)
            results.setdefault(variant, []).append(fit["accuracy"])
            f1s.setdefault(variant, []).append(fit["macro_f1"])
            class_f1s.setdefault(variant, []).append(fit["per_class_f1"])
            sizes[variant] = fit["n"]
            print(
                f"seed {seed} {variant:15s} n={fit['n']:6d} accuracy {fit['accuracy']:.4f} "
                f"macro-F1 {fit['macro_f1']:.4f}  (reweight {rw_s:.0f} s, fit {fit['fit_s']:.0f} s)",
                flush=True,
            )

    print(
        f"\n== {args.task}: {len(pool)} SmolLM2 samples, reweighting TAM {args.tam}, final TAM "
        f"{final_tam}, filters score with {filter_tam}, keep {args.fraction} per label"
        f"{' (SunGen weighted)' if args.weighted else ''}, gold {args.gold}"
    )
    print("| variant | train size | accuracy | macro-F1 |")
    print("|---|---|---|---|")
    summary = {}
    for variant, accs in results.items():
        summary[variant] = {
            "mean": float(np.mean(accs)),
            "std": float(np.std(accs)),
            "runs": accs,
            "macro_f1": f1s[variant],
            "n": sizes[variant],
            "per_class_f1": {k: [run[k] for run in class_f1s[variant]] for k in spec.label_names},
        }
        print(
            f"| {variant} | {sizes[variant]} | {np.mean(accs):.4f} ± {np.std(accs):.4f} | "
            f"{np.mean(f1s[variant]):.4f} ± {np.std(f1s[variant]):.4f} |"
        )
    filters = [v for v in summary if v not in ("sungen", "zerogen")]
    best_filter = max(filters, key=lambda v: summary[v]["mean"]) if filters else None
    verdicts = {}
    for rival in [v for v in ("zerogen", best_filter) if v in summary and "sungen" in summary]:
        gap = summary["sungen"]["mean"] - summary[rival]["mean"]
        spread = max(summary["sungen"]["std"], summary[rival]["std"])
        verdicts[rival] = {"gap": gap, "spread": spread, "above": bool(gap > spread)}
        print(
            f"SunGen - {rival} = {gap:+.4f}; larger seed spread {spread:.4f}: SunGen is "
            f"{'above' if gap > spread else 'NOT above'} {rival} by more than the spread"
        )
    if best_filter and "sungen" in summary:
        show_per_class(summary, best_filter, spec.label_names)
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "verdicts": verdicts}, indent=2))


def show_per_class(summary: dict, rival: str, label_names: list[str]) -> None:
    """Where SunGen wins or loses against ``rival``: F1 per class, mean over seeds."""
    print(f"\n| class | SunGen F1 | {rival} F1 | difference |\n|---|---|---|---|")
    for name in label_names:
        ours, theirs = (float(np.mean(summary[v]["per_class_f1"][name])) for v in ("sungen", rival))
        print(f"| {name} | {ours:.4f} | {theirs:.4f} | {ours - theirs:+.4f} |")


def show_ranked(pool, weights: np.ndarray, label_names: list[str], n: int) -> None:
    """Why a task wins or loses: what the weights put first and last within each label."""
    for name, ranked in ranked_by_label(pool.text, pool.label, weights, label_names, n).items():
        for side in ("highest", "lowest"):
            print(f"-- {name}: {side}-weighted")
            for w, text in ranked[side]:
                print(f"   w={w:.3f}  {text[:160]!r}")


if __name__ == "__main__":
    main()
