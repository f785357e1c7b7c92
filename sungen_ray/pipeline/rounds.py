"""One round of the driver: generate (feedback-guided from round 1 on), reweight the pool of
rounds 0..r, select the curated set. Each function is one stage's body (see ``driver.plan``)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from sungen_ray.data import atomic
from sungen_ray.data.labelled import read_labelled, read_table
from sungen_ray.pipeline.config import PipelineConfig
from sungen_ray.pipeline.layout import RunLayout
from sungen_ray.tasks.spec import TaskSpec


def pool_view(layout: RunLayout, r: int) -> Path:
    """A directory of links to the data files of rounds 0..r: the pool that round r reweights."""
    view = layout.pool_view(r)
    view.mkdir(parents=True, exist_ok=True)
    for q in range(r + 1):
        for f in sorted(layout.pool_data(q).glob("*.parquet")):
            link = view / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    return view


def feedback_examples(cfg: PipelineConfig, spec: TaskSpec, r: int) -> dict[str, list[str]] | None:
    """The previous round's highest-weighted samples per label, as in-context examples."""
    if not cfg.feedback.enabled or r == 0:
        return None
    prev = RunLayout(cfg.out).selected(r - 1)
    table = read_table(prev).to_pandas()
    out = {}
    for label, name in enumerate(spec.label_names):
        rows = table[table.label == label].sort_values("weight", ascending=False).head(cfg.feedback.from_top)
        out[name] = rows.text.tolist()
    return out


def generate_round(cfg: PipelineConfig, spec: TaskSpec, r: int, engines=None) -> dict:
    """``engines``: the run's ``EnginePool``, reused from round to round."""
    from sungen_ray.generation.config import GenerateConfig
    from sungen_ray.generation.pipeline import generate

    layout = RunLayout(cfg.out)
    previous = [layout.pool_data(q) for q in range(r)]
    existing = set(read_table(previous).column("text").to_pylist()) if previous else set()
    gen_cfg = GenerateConfig.from_settings(
        cfg.generation,
        task=cfg.task,
        num_samples=cfg.rounds[r].num_samples,
        out=str(layout.pool(r)),
        seed=cfg.seed * 1000 + r,
        round=r,
        idx_offset=sum(rc.num_samples for rc in cfg.rounds[:r]),
        examples=feedback_examples(cfg, spec, r),
        examples_per_prompt=cfg.feedback.examples,
        use_gpu=cfg.use_gpu or None,
    )
    manifest = generate(gen_cfg, existing_texts=existing, engines=engines)
    keys = ("requested", "kept", "kept_per_label", "dropped", "prompts_sent", "tokens_generated", "seconds")
    channel = score_channel(cfg, spec, layout.pool_data(r), engines)
    return (
        {k: manifest[k] for k in keys}
        | channel
        | {
            "samples_per_s": manifest["samples_per_s"],
            "tokens_per_s": manifest["tokens_per_s"],
            "engine_tokens_per_s": manifest.get("engine_tokens_per_s"),
            "engine_seconds": manifest.get("engine_seconds"),
            "engine_starts": manifest.get("engine_starts"),
            "time_to_first_row": manifest.get("time_to_first_row"),
            "replicas": manifest.get("replicas"),
            "cpus_per_replica": manifest.get("cpus_per_replica"),
        }
    )


def score_channel(cfg: PipelineConfig, spec: TaskSpec, pool_data: Path, engines=None) -> dict:
    """The generator's channel margin as a pool column (``sungen_ray.plm.channel``), when on: on the
    run's live vLLM replicas (prompt log-probs) where there are some, else with transformers here."""
    if not cfg.channel.active(spec.num_labels):
        return {"channel_scored": 0}
    from sungen_ray.data.labelled import parquet_files
    from sungen_ray.plm.channel import add_channel_margin, read_own_scores
    from sungen_ray.plm.prepare import resolve_model

    live = engines if engines is not None and engines.engine == "vllm" and engines.replicas else None
    done = add_channel_margin(
        parquet_files(pool_data),
        spec,
        resolve_model(cfg.generation.model),
        cfg.channel.batch_size,
        engines=live,
        own=read_own_scores(pool_data.parent),  # the own label's scores that came with generation
    )
    return {
        "channel_scored": done["texts"],
        "channel_seconds": done["seconds"],
        "channel_on": "vllm replicas" if live else "transformers",
        "channel_own_from_generation": done["from_generation"],
    }


def reweight_round(cfg: PipelineConfig, spec: TaskSpec, r: int, directory: Path) -> dict:
    from sungen_ray.reweight.api import reweight_pool

    view = pool_view(RunLayout(cfg.out), r)
    with counted_encoding(view, cfg, cfg.reweight.tam.name == "minilm", attach=False) as features:
        reweight_pool(view, directory, cfg.reweight, cfg.workers, cfg.use_gpu, spec.num_labels)
    metrics = json.loads((directory / "metrics.json").read_text())
    its = metrics["iterations"]
    return {
        "num_samples": metrics["num_samples"],
        "iterations": metrics["iterations_run"],
        "stopped_early": metrics["stopped_early"],
        "outer_loss_first": its[0]["outer_loss"] if its else None,
        "outer_loss_last": its[-1]["outer_loss"] if its else None,
        "seconds_per_iteration": float(np.mean([sum(m["seconds"].values()) for m in its])) if its else None,
        "health": metrics.get("health"),
        "features": features,
    }


@contextlib.contextmanager
def counted_encoding(view: Path, cfg: PipelineConfig, needed: bool, attach: bool):
    """Store the pool's MiniLM features before a stage (only rows no store covers are encoded;
    ``attach``: hand them to this process's encoder too) and count, in the dict yielded, what the
    stage encoded: ``stored`` (pool texts encoded into a store now), ``where`` (ray / local) and
    ``outside_store`` (texts this process encoded besides, e.g. gold texts; pool texts never)."""
    from sungen_ray.features.pool import attach_pool_features, ensure_pool_features
    from sungen_ray.tam import minilm

    record: dict = {"stored": 0, "where": None, "outside_store": 0}
    before = minilm.texts_encoded()
    if needed:
        fill = (attach_pool_features if attach else ensure_pool_features)(view, cfg.features)
        record.update(stored=fill["texts_encoded"], where=fill["where"], seconds=fill["seconds"])
    try:
        yield record
    finally:
        if attach:
            minilm.detach_features()
    local = record["stored"] if record["where"] == "local" else 0
    record["outside_store"] = minilm.texts_encoded() - before - local


def select_round(cfg: PipelineConfig, spec: TaskSpec, r: int, directory: Path) -> dict:
    import pyarrow as pa

    from sungen_ray.curate.curated import curate
    from sungen_ray.curate.weights import read_weights

    layout = RunLayout(cfg.out)
    pool = read_labelled(pool_view(layout, r), num_labels=spec.num_labels)
    weights = read_weights(layout.reweight(r), pool.idx)
    curated = curate(pool, weights, cfg.select, spec.num_labels)
    keep, shares = curated.keep, curated.shares
    table = pa.table({"idx": pool.idx, "text": pool.text, "label": pool.label, "weight": weights, "keep": keep})
    atomic.write_parquet(layout.selected(r), table)
    return {
        "pool": len(pool),
        "kept": int(keep.sum()),
        "kept_fraction": float(keep.mean()),
        "label_shares": {spec.label_names[k]: v for k, v in shares.items()},
    }
