"""The driver: rounds of generate -> reweight -> select, then train, evaluate and report.

    python -m jobs.sungen_pipeline --config jobs/configs/demo.yaml [--set key.path=value ...]

The same entry point runs on a laptop and as a Ray job on a cluster
(``ray job submit --working-dir . -- python -m jobs.sungen_pipeline --config ...``).

Every stage writes into its own directory and finishes by atomically writing ``stage.json``
(a hash of its inputs, its result, its seconds). A re-submitted job skips every stage whose
``stage.json`` matches and resumes the unfinished one (generation from its staged attempts,
reweighting from its last iteration's checkpoint).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jobs.config import PipelineConfig, load_config
from sungen_ray.config import config_hash, to_dict
from sungen_ray.data import atomic
from sungen_ray.data.labelled import read_labelled, read_table
from sungen_ray.errors import SungenError
from sungen_ray.generation.pipeline import EXECUTION_ONLY
from sungen_ray.tasks.spec import TaskSpec, load_task

STAGE_FILE = "stage.json"


def stage(directory: Path, name: str, inputs: dict, fn: Callable[[Path], dict]) -> dict:
    """Run ``fn(directory)`` unless a finished ``stage.json`` with the same input hash is there."""
    marker = directory / STAGE_FILE
    digest = config_hash(inputs)
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("hash") == digest:
            print(f"[pipeline] {name}: done already, skipping ({directory})", flush=True)
            return done["result"]
        print(f"[pipeline] {name}: inputs changed since the last run, redoing it", flush=True)
    directory.mkdir(parents=True, exist_ok=True)
    print(f"[pipeline] {name}: starting", flush=True)
    t0 = time.perf_counter()
    result = fn(directory)
    seconds = time.perf_counter() - t0
    atomic.write_json(marker, {"stage": name, "hash": digest, "seconds": round(seconds, 2), "result": result})
    print(f"[pipeline] {name}: finished in {seconds:.1f} s", flush=True)
    return result


# ---------------------------------------------------------------------------------------------- rounds


def round_dir(cfg: PipelineConfig, r: int) -> Path:
    return Path(cfg.out) / f"round-{r:02d}"


def file_sha256(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pool_dir(cfg: PipelineConfig, r: int) -> Path:
    return Path(cfg.out) / "pool" / f"round-{r:02d}"


def pool_view(cfg: PipelineConfig, r: int) -> Path:
    """A directory of links to the data files of rounds 0..r: the pool that round r reweights."""
    view = round_dir(cfg, r) / "pool"
    view.mkdir(parents=True, exist_ok=True)
    for q in range(r + 1):
        for f in sorted((pool_dir(cfg, q) / "data").glob("*.parquet")):
            link = view / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    return view


def feedback_examples(cfg: PipelineConfig, spec: TaskSpec, r: int) -> dict[str, list[str]] | None:
    """The previous round's highest-weighted samples per label, as in-context examples."""
    if not cfg.feedback.enabled or r == 0:
        return None
    prev = round_dir(cfg, r - 1) / "select" / "selected.parquet"
    table = read_table(prev).to_pandas()
    out = {}
    for label, name in enumerate(spec.label_names):
        rows = table[table.label == label].sort_values("weight", ascending=False).head(cfg.feedback.from_top)
        out[name] = rows.text.tolist()
    return out


def generate_round(cfg: PipelineConfig, spec: TaskSpec, r: int) -> dict:
    from sungen_ray.generation.pipeline import GenerateConfig, generate

    g = cfg.generation
    previous = [pool_dir(cfg, q) / "data" for q in range(r)]
    existing = set(read_table(previous).column("text").to_pylist()) if previous else set()
    gen_cfg = GenerateConfig(
        task=cfg.task,
        num_samples=cfg.rounds[r].num_samples,
        out=str(pool_dir(cfg, r)),
        model=g.model,
        engine=g.engine,
        replicas=g.replicas,
        cpus_per_replica=g.cpus_per_replica,
        max_num_seqs=g.max_num_seqs,
        stall_timeout_s=g.stall_timeout_s,
        seed=cfg.seed * 1000 + r,
        batch_size=g.batch_size,
        max_prompts_per_sample=g.max_prompts_per_sample,
        round=r,
        idx_offset=sum(rc.num_samples for rc in cfg.rounds[:r]),
        examples=feedback_examples(cfg, spec, r),
        examples_per_prompt=cfg.feedback.examples,
        use_gpu=cfg.use_gpu or None,
    )
    manifest = generate(gen_cfg, existing_texts=existing)
    keys = ("requested", "kept", "kept_per_label", "dropped", "prompts_sent", "tokens_generated", "seconds")
    return {k: manifest[k] for k in keys} | {
        "samples_per_s": manifest["samples_per_s"],
        "tokens_per_s": manifest["tokens_per_s"],
        "engine_tokens_per_s": manifest.get("engine_tokens_per_s"),
        "engine_seconds": manifest.get("engine_seconds"),
        "engine_starts": manifest.get("engine_starts"),
        "replicas": manifest.get("replicas"),
        "cpus_per_replica": manifest.get("cpus_per_replica"),
    }


def reweight_round(cfg: PipelineConfig, spec: TaskSpec, r: int, directory: Path) -> dict:
    from sungen_ray.reweight.api import reweight_pool

    reweight_pool(pool_view(cfg, r), directory, cfg.reweight, cfg.workers, cfg.use_gpu, spec.num_labels)
    metrics = json.loads((directory / "metrics.json").read_text())
    its = metrics["iterations"]
    return {
        "num_samples": metrics["num_samples"],
        "iterations": metrics["iterations_run"],
        "stopped_early": metrics["stopped_early"],
        "outer_loss_first": its[0]["outer_loss"] if its else None,
        "outer_loss_last": its[-1]["outer_loss"] if its else None,
        "seconds_per_iteration": float(np.mean([sum(m["seconds"].values()) for m in its])) if its else None,
    }


def select_round(cfg: PipelineConfig, spec: TaskSpec, r: int, directory: Path) -> dict:
    import pyarrow as pa

    from sungen_ray.curation import read_weights
    from sungen_ray.selection import label_shares, select

    pool = read_labelled(pool_view(cfg, r), num_labels=spec.num_labels)
    weights = read_weights(round_dir(cfg, r) / "reweight", pool.idx)
    keep = select(weights, pool.label, cfg.select)
    table = pa.table({"idx": pool.idx, "text": pool.text, "label": pool.label, "weight": weights, "keep": keep})
    atomic.write_parquet(directory / "selected.parquet", table)
    shares = label_shares(pool.label, keep, spec.num_labels)
    return {
        "pool": len(pool),
        "kept": int(keep.sum()),
        "kept_fraction": float(keep.mean()),
        "label_shares": {spec.label_names[k]: v for k, v in shares.items()},
    }


# ----------------------------------------------------------------------------------- final + baselines


def final_stage(cfg: PipelineConfig, spec: TaskSpec, directory: Path) -> dict:
    """Train the SunGen model and every baseline with the same TAM and seeds; evaluate on gold."""
    from sungen_ray import final_model
    from sungen_ray.baselines import training_sets

    last = round_dir(cfg, len(cfg.rounds) - 1) / "select" / "selected.parquet"
    table = read_table(last).to_pandas()
    logprobs = read_table(pool_view(cfg, len(cfg.rounds) - 1)).to_pandas().set_index("idx")["logprob"]
    gold = Path(cfg.gold) if cfg.gold else None
    gold_ok = gold is not None and gold.is_file()
    if gold_ok:
        final_model.read_gold(gold, spec.label_names)  # label check before any training
    results: dict = {"gold": str(gold) if gold_ok else None, "variants": {}}
    if cfg.gold and not gold_ok:
        results["note"] = f"gold file {cfg.gold} not found: accuracy not measured"
        print(f"[pipeline] {results['note']}", flush=True)
    for seed in cfg.seeds:
        final_cfg = dataclasses.replace(cfg.final, seed=seed)
        sets = training_sets(table, logprobs, cfg.baselines, cfg.select.weighted, spec, final_cfg)
        for variant, (texts, labels, weights, info) in sets.items():
            t0 = time.perf_counter()
            trained = final_model.fit(texts, labels, spec.label_names, final_cfg, weights)
            entry = {"train_size": len(texts), "train_seconds": time.perf_counter() - t0, **info}
            if gold_ok:
                entry.update(final_model.evaluate(trained, gold))
            if variant == "sungen" and seed == cfg.seeds[0]:
                final_model.save(directory / "model", trained, {"task": spec.name, "variant": variant})
            results["variants"].setdefault(variant, []).append({"seed": seed, **entry})
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
    results["summary"] = summary
    atomic.write_json(directory / "final.json", results)
    return {"summary": summary, "gold": results["gold"], "note": results.get("note")}


# ---------------------------------------------------------------------------------------------- driver


def run_pipeline(cfg: PipelineConfig, stop_after: str | None = None) -> dict:
    from sungen_ray.report import write_report

    spec = load_task(cfg.task)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "config.json", to_dict(cfg))
    t_start = time.perf_counter()
    base = {"task": to_dict(spec), "seed": cfg.seed}
    for r in range(len(cfg.rounds)):
        gen_inputs = base | {
            "round": r,
            "rounds": to_dict(cfg)["rounds"][: r + 1],
            "generation": {k: v for k, v in to_dict(cfg.generation).items() if k not in EXECUTION_ONLY},
        }
        gen_inputs["feedback"] = to_dict(cfg.feedback) if r else None
        stage(pool_dir(cfg, r), f"round {r} generate", gen_inputs, lambda d, r=r: generate_round(cfg, spec, r))
        if stop_after == f"generate-{r}":
            return {"stopped_after": stop_after}
        rw_inputs = gen_inputs | {"reweight": to_dict(cfg.reweight), "workers": cfg.workers}
        stage(
            round_dir(cfg, r) / "reweight",
            f"round {r} reweight",
            rw_inputs,
            lambda d, r=r: reweight_round(cfg, spec, r, d),
        )
        sel_inputs = rw_inputs | {"select": to_dict(cfg.select)}
        stage(
            round_dir(cfg, r) / "select", f"round {r} select", sel_inputs, lambda d, r=r: select_round(cfg, spec, r, d)
        )
        if stop_after == f"select-{r}":
            return {"stopped_after": stop_after}
    final_inputs = sel_inputs | {
        "final": to_dict(cfg.final),
        "baselines": cfg.baselines,
        "seeds": cfg.seeds,
        "gold": cfg.gold,
        # the file itself, not just its name: a gold file that appears or changes re-runs the evaluation
        "gold_sha256": file_sha256(cfg.gold),
    }
    final = stage(out / "final", "final training + evaluation", final_inputs, lambda d: final_stage(cfg, spec, d))
    report = write_report(cfg, spec, out, total_seconds=time.perf_counter() - t_start)
    print(f"[pipeline] report: {out / 'report.md'}", flush=True)
    s = final["summary"]
    if s.get("sungen", {}).get("accuracy_mean") is not None and "zerogen" in s:
        print(
            f"[pipeline] accuracy on {final['gold']}: SunGen {s['sungen']['accuracy_mean']:.4f} "
            f"vs ZeroGen {s['zerogen']['accuracy_mean']:.4f}",
            flush=True,
        )
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.sungen_pipeline", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--config", required=True, help="pipeline YAML (see jobs/configs/)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    ap.add_argument("--stop-after", help="stop after a stage, e.g. generate-0 or select-1 (for staged runs)")
    ap.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray Data operator progress and Ray/vLLM INFO logs (config: verbose)",
    )


def run(args: argparse.Namespace) -> int:
    from sungen_ray.ray_runtime import set_verbose

    try:
        cfg = load_config(args.config, args.set)
        set_verbose(cfg.verbose or args.verbose)
        run_pipeline(cfg, args.stop_after)
    except SungenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
