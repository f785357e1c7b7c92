"""The final stage: the SunGen model and every baseline trained with the same TAM and seeds,
evaluated on the gold file when there is one, summarised as mean and spread over seeds."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from sungen_ray.data import atomic
from sungen_ray.data.labelled import read_table
from sungen_ray.pipeline.config import PipelineConfig
from sungen_ray.pipeline.layout import RunLayout
from sungen_ray.pipeline.rounds import counted_encoding, pool_view
from sungen_ray.tasks.spec import TaskSpec


def final_stage(cfg: PipelineConfig, spec: TaskSpec, directory: Path) -> dict:
    """Train the SunGen model and every baseline with the same TAM and seeds; evaluate on gold."""
    from sungen_ray.curate.baselines import pool_score_columns, training_sets
    from sungen_ray.parallel.quiet import is_verbose
    from sungen_ray.plm.identity import portable
    from sungen_ray.tam import final as final_model

    layout = RunLayout(cfg.out)
    table = read_table(layout.selected(len(cfg.rounds) - 1)).to_pandas()
    pool = read_table(pool_view(layout, len(cfg.rounds) - 1))
    pool_scores = pool_score_columns(pool)
    gold = Path(cfg.gold) if cfg.gold else None
    gold_ok = gold is not None and gold.is_file()
    if gold_ok:
        final_model.read_gold(gold, spec.label_names)  # label check before any training
    results: dict = {"gold": str(gold) if gold_ok else None, "variants": {}}
    # the generator by identity (the pool's model column), never a path: the model leaves this machine
    models = pool.column("model").to_pylist() if "model" in pool.column_names else []
    generators = sorted({portable(str(m)) for m in models if m is not None}) or None
    meta = {"task": spec.name, "generator": generators}
    _export_dataset(cfg, spec, table, pool, generators, directory / "dataset")
    if cfg.gold and not gold_ok:
        results["note"] = f"gold file {cfg.gold} not found: accuracy not measured"
        print(f"[pipeline] {results['note']}", flush=True)
    # stored pool features, attached: SunGen and every baseline train on them; only gold texts are encoded
    uses_minilm = cfg.final.tam.name == "minilm" or "confidence_lr" in cfg.baselines
    with counted_encoding(pool_view(layout, len(cfg.rounds) - 1), cfg, uses_minilm, attach=True) as features:
        for seed in cfg.seeds:
            final_cfg = dataclasses.replace(cfg.final, seed=seed)
            sets = training_sets(table, pool_scores, cfg.baselines, cfg.select.weighted, spec, final_cfg)
            for variant, (texts, labels, weights, info) in sets.items():
                t0 = time.perf_counter()
                trained = final_model.fit(texts, labels, spec.label_names, final_cfg, weights)
                entry = {"train_size": len(texts), "train_seconds": time.perf_counter() - t0, **info}
                if gold_ok:
                    entry.update(final_model.evaluate(trained, gold))
                if variant == "sungen" and seed == cfg.seeds[0]:
                    final_model.save(directory / "model", trained, {**meta, "variant": variant})
                results["variants"].setdefault(variant, []).append({"seed": seed, **entry})
                if is_verbose():  # quiet: one line per variant once every seed is done (below)
                    acc = f", accuracy {entry['accuracy']:.4f}" if "accuracy" in entry else ""
                    print(f"[pipeline] final {variant} seed {seed}: {len(texts)} samples{acc}", flush=True)
    summary = {}
    for variant, runs in results["variants"].items():
        accs = [x["accuracy"] for x in runs if "accuracy" in x]
        f1s = [x["macro_f1"] for x in runs if "macro_f1" in x]
        summary[variant] = {
            "train_size": runs[0]["train_size"],
            "accuracy_mean": float(np.mean(accs)) if accs else None,
            "accuracy_std": float(np.std(accs)) if accs else None,
            "macro_f1_mean": float(np.mean(f1s)) if f1s else None,
        }
        acc = f", accuracy {summary[variant]['accuracy_mean']:.4f}" if accs else ""
        spread = f" ± {summary[variant]['accuracy_std']:.4f}" if len(accs) > 1 else ""
        seeds = f" over {len(runs)} seeds" if len(runs) > 1 else ""
        print(f"[pipeline] final {variant}: {runs[0]['train_size']} samples{acc}{spread}{seeds}", flush=True)
    results["summary"] = summary
    results["features"] = features
    atomic.write_json(directory / "final.json", results)
    return {"summary": summary, "gold": results["gold"], "note": results.get("note"), "features": features}


def _export_dataset(cfg: PipelineConfig, spec: TaskSpec, selected, pool, generators, out: Path) -> None:
    """The curated set (the last round's kept rows) as a dataset with a card (``curate.dataset``)."""
    from sungen_ray.config import to_dict
    from sungen_ray.curate.dataset import write_dataset
    from sungen_ray.curate.export_table import curated_table

    kept = selected[selected["keep"]]
    provenance = {
        "task": spec.name,
        "generator": generators,
        "method": f"SunGen bilevel robust reweighting over {len(cfg.rounds)} round(s), then selection by weight",
        "settings": {
            "rounds": to_dict(cfg)["rounds"],
            "reweight": to_dict(cfg.reweight),
            "select": to_dict(cfg.select),
        },
        "pool_rows": len(selected),
    }
    table = curated_table(pool, kept["idx"].to_numpy(), kept["weight"].to_numpy())
    write_dataset(out, table, spec.label_names, provenance)
    print(f"[pipeline] curated set: {table.num_rows} rows -> {out} (loads with datasets.load_dataset)", flush=True)
