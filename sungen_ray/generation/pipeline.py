"""``generate``: a balanced synthetic pool of N labelled texts, streamed through an engine by Ray Data.

The pipeline is prompt rows -> engine stage (vLLM replicas or transformers actors) -> per-row
postprocess, and the driver consumes the stream: it dedupes, counts drop reasons, and stops as
soon as every label has its share. If the model wastes more samples than expected, it tops up
with new prompts for the labels that are short, a bounded number of times.

Kept rows are staged per attempt under ``OUT/.staging`` (``staging.py``) so an interrupted run
resumes instead of regenerating; the final Parquet (``pool_writer.py``) and ``manifest.json``
appear atomically at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sungen_ray.config import config_hash
from sungen_ray.data import atomic
from sungen_ray.errors import SungenError
from sungen_ray.generation.config import GenerateConfig
from sungen_ray.generation.engines import EngineOptions, engine_stage
from sungen_ray.generation.pool_writer import pool_table, write_pool
from sungen_ray.generation.postprocess import clean_text, drop_reason
from sungen_ray.generation.prompts import label_targets, prompt_rows
from sungen_ray.generation.staging import Tally, check_out_dir, load_staged, snapshot, stage_chunk
from sungen_ray.generation.watchdog import watch_for_stall
from sungen_ray.tasks.spec import TaskSpec, load_task

PROGRESS_EVERY_S = 10.0
FLUSH_EVERY_S = 60.0  # an interrupted run loses at most this much generation
ATTEMPT_ROW_SPACING = 10**10  # row ids (= sampling seeds) of attempt a start at a * spacing


def _row_error(batch: dict, i: int) -> str:
    """ray.data.llm sends failed rows past our postprocess with ``__inference_error__`` set."""
    for col in ("error", "__inference_error__"):
        if col in batch and batch[col][i]:
            return str(batch[col][i])
    return ""


def consume(
    stream,
    spec: TaskSpec,
    targets: list[int],
    tally: Tally,
    seen: set[str],
    label: str,
    on_flush: Callable[[], None] | None = None,
) -> None:
    """Pull engine output, keep usable unique rows until every label is full.
    ``on_flush`` is called every FLUSH_EVERY_S so kept rows reach disk while a long attempt runs."""
    stop = spec.decoding.stop
    last_flush = time.perf_counter()
    per_label = Counter(r["label"] for r in tally.kept)
    start = last = time.perf_counter()
    tokens0 = tally.tokens
    for batch in stream:
        for i in range(len(batch["row_id"])):
            row_id = int(batch["row_id"][i])
            if row_id in tally.row_ids:  # a re-executed task's repeat; the first copy was counted
                tally.dropped["reexecuted"] += 1
                continue
            tally.row_ids.add(row_id)
            if "engine" in batch:
                tally.engines.add(str(batch["engine"][i]))
            lab = int(batch["label"][i])
            tally.prompts += 1
            tally.prompts_per_label[lab] += 1
            if "t_submit" in batch and batch["t_submit"][i] is not None and np.isfinite(batch["t_submit"][i]):
                tally.first_submit = min(tally.first_submit, float(batch["t_submit"][i]))
                tally.last_done = max(tally.last_done, float(batch["t_done"][i]))
            err = _row_error(batch, i)
            if err:
                tally.dropped["engine_error"] += 1
                if len(tally.errors) < 5:
                    tally.errors.append(err[:300])
                continue
            tally.tokens += int(batch["num_generated_tokens"][i] or 0)
            text = clean_text(str(batch["generated_text"][i]), stop)
            reason = drop_reason(text, spec.decoding.min_words)
            if reason is None and text in seen:
                reason = "duplicate"
            if reason is None and per_label[lab] >= targets[lab]:
                reason = "surplus"
            if reason:
                tally.dropped[reason] += 1
                continue
            seen.add(text)
            per_label[lab] += 1
            lp = float(batch["logprob"][i])
            tally.kept.append(
                {
                    "row_id": row_id,
                    "text": text,
                    "label": lab,
                    "label_name": str(batch["label_name"][i]),
                    "logprob": lp,
                }
            )
        now = time.perf_counter()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            rate = (tally.tokens - tokens0) / max(now - start, 1e-9)
            shares = ", ".join(f"{spec.labels[k].name} {per_label[k]}/{t}" for k, t in enumerate(targets))
            print(f"[generate] {label}: kept {shares}; {tally.prompts} prompts, {rate:.1f} tok/s", flush=True)
        if on_flush is not None and now - last_flush >= FLUSH_EVERY_S:
            last_flush = now
            on_flush()
        if all(per_label[k] >= t for k, t in enumerate(targets)):
            return


def run_engine(cfg: GenerateConfig, opts: EngineOptions, rows: list[dict]):
    import ray

    blocks = max(1, math.ceil(len(rows) / (cfg.batch_size * cfg.batches_per_block)))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    ds = engine_stage(cfg.engine, ds, opts)
    return watch_for_stall(
        ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1), cfg.stall_timeout_s
    )


def _conditions(cfg: GenerateConfig, spec: TaskSpec, opts: EngineOptions, staging: Path) -> list[str] | None:
    """First stage for tasks that condition on generated values (movie/restaurant/product names)."""
    if spec.condition is None:
        return None
    path = staging / "conditions.json"
    if path.is_file():
        return json.loads(path.read_text())
    c = spec.condition
    decoding = dataclasses.replace(spec.decoding, max_new_tokens=c.max_new_tokens, min_new_tokens=0)
    copts = dataclasses.replace(opts, decoding=decoding, seed=opts.seed + 7919)
    rows = [{"row_id": i, "label": 0, "label_name": "", "prompt": c.prompt} for i in range(2 * c.num_values)]
    values: list[str] = []
    seen: set[str] = set()
    print(f"[generate] condition stage: {len(rows)} prompts for {c.num_values} values of {c.prompt!r}", flush=True)
    for batch in run_engine(cfg, copts, rows):
        for text, err in zip(batch["generated_text"], batch["error"]):
            value = clean_text(str(text), decoding.stop)
            if err or drop_reason(value, c.min_words, c.max_words) or value in seen:
                continue
            seen.add(value)
            values.append(value)
    values = values[: c.num_values]
    if not values:
        raise SungenError(f"the model produced no usable condition values for prompt {c.prompt!r}")
    atomic.write_json(path, values)
    return values


def generate(cfg: GenerateConfig, existing_texts: set[str] | None = None) -> dict:
    """Generate the pool described by ``cfg`` into ``cfg.out``; return its manifest."""
    from sungen_ray.parallel.ray_runtime import cluster_has_gpus, ensure_ray
    from sungen_ray.plm.prepare import resolve_model

    cfg.validate()
    spec = load_task(cfg.task)
    out = Path(cfg.out)
    run_hash = config_hash(cfg.identity(spec))
    done = check_out_dir(out, run_hash)
    if done is not None:
        print(f"[generate] {out} already holds this run ({done['kept']} samples); nothing to do", flush=True)
        return done
    model = resolve_model(cfg.model)
    staging = out / ".staging"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        atomic.write_json(staging / "run.json", {"config_hash": run_hash, "config": dataclasses.asdict(cfg)})
    except OSError as exc:  # read-only mount, no permission, missing parent on a read-only fs
        raise SungenError(f"--out {out}: cannot write there ({exc.strerror or exc})") from exc

    ensure_ray(min_cpus=cfg.replicas * cfg.cpus_per_replica + 2)
    use_gpu = cluster_has_gpus() if cfg.use_gpu is None else cfg.use_gpu
    opts = EngineOptions(
        model=model,
        decoding=spec.decoding,
        replicas=cfg.replicas,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        use_gpu=use_gpu,
        cpus_per_replica=cfg.cpus_per_replica,
        max_num_seqs=cfg.max_num_seqs,
        resources=dict(cfg.replica_resources or {}),
    )
    t0 = time.perf_counter()
    conditions = _conditions(cfg, spec, opts, staging)
    targets = label_targets(cfg.num_samples, spec.num_labels)
    tally, attempt = load_staged(staging)
    if attempt:
        print(f"[generate] resuming: {len(tally.kept)} samples staged by {attempt} earlier attempt(s)", flush=True)
    seen = set(existing_texts or ()) | {r["text"] for r in tally.kept}
    while attempt < cfg.max_attempts:
        have = Counter(r["label"] for r in tally.kept)
        short = [max(0, t - have[k]) for k, t in enumerate(targets)]
        if not any(short):
            break
        # Ask for enough prompts to cover each label's shortfall at the keep rate it has shown so far;
        # a top-up asks for at least one engine batch, since a smaller one costs the same engine time
        # and small top-ups fall short by chance (README, Generation throughput).
        counts = []
        for k, s in enumerate(short):
            sent = tally.prompts_per_label[k]
            keep_rate = have[k] / sent if sent else 1.0
            n = math.ceil(s * cfg.overgenerate / max(keep_rate, 0.1)) if s else 0
            counts.append(max(n, cfg.batch_size) if s and sent else n)
        rows = prompt_rows(
            spec,
            counts,
            seed=cfg.seed + attempt,
            start_id=attempt * ATTEMPT_ROW_SPACING,  # fresh seeds for every attempt, also after a resume
            conditions=conditions,
            examples=cfg.examples,
            examples_per_prompt=cfg.examples_per_prompt,
        )
        print(f"[generate] attempt {attempt + 1}/{cfg.max_attempts}: {sum(counts)} prompts for {sum(short)} samples")
        chunk = {"n": 0, "before": snapshot(tally)}

        def flush(attempt=attempt, chunk=chunk):
            stage_chunk(staging, f"attempt-{attempt:03d}-{chunk['n']:04d}", chunk["before"], tally)
            chunk["n"] += 1
            chunk["before"] = snapshot(tally)

        try:
            consume(run_engine(cfg, opts, rows), spec, targets, tally, seen, f"attempt {attempt + 1}", on_flush=flush)
        finally:  # also on Ctrl-C or a stall: what was kept reaches the staging dir
            tally.close_window(cfg.replicas)
            flush()
        attempt += 1
    seconds = time.perf_counter() - t0

    have = Counter(r["label"] for r in tally.kept)
    manifest = {
        "status": "complete",
        "task": spec.name,
        "model": model,
        "engine": cfg.engine,
        "replicas": cfg.replicas,
        "seed": cfg.seed,
        "round": cfg.round,
        "config_hash": run_hash,
        "config": dataclasses.asdict(cfg),
        "requested": cfg.num_samples,
        "requested_per_label": {spec.labels[k].name: t for k, t in enumerate(targets)},
        "kept": len(tally.kept),
        "kept_per_label": {spec.labels[k].name: have[k] for k in range(spec.num_labels)},
        "prompts_sent": tally.prompts,
        "attempts": attempt,
        "dropped": {
            k: tally.dropped.get(k, 0)
            for k in ("empty", "too_short", "duplicate", "engine_error", "surplus", "reexecuted")
        },
        # engine replicas that started over mid-attempt (node loss, crash): their lost work was redone
        "engine_restarts": tally.engine_restarts,
        "engine_error_examples": tally.errors,
        "conditions": len(conditions) if conditions else 0,
        "tokens_generated": tally.tokens,
        "seconds": round(seconds, 2),
        "samples_per_s": round(len(tally.kept) / seconds, 3) if seconds else None,
        "tokens_per_s": round(tally.tokens / seconds, 2) if seconds else None,
        # the same rates over generation time only (engine start-up and condition stage excluded)
        "engine_seconds": round(tally.engine_seconds, 2),
        "engine_tokens_per_s": round(tally.tokens / tally.engine_seconds, 2) if tally.engine_seconds else None,
        "engine_samples_per_s": round(len(tally.kept) / tally.engine_seconds, 3) if tally.engine_seconds else None,
    }
    short = {spec.labels[k].name: t - have[k] for k, t in enumerate(targets) if have[k] < t}
    if short:
        manifest["status"] = "incomplete"
        atomic.write_json(staging / "manifest.partial.json", manifest)
        raise SungenError(
            f"the model produced too few usable samples after {attempt} attempts; still short {short} "
            f"(dropped: {manifest['dropped']}). Staged rows are kept in {staging}; raise max_attempts, "
            "lower the spec's min_words, or use a stronger --model"
        )

    table = pool_table(tally.kept, spec, cfg, model)
    files = write_pool(out, table, cfg.round)
    manifest.update(
        {
            "files": files,
            "columns": table.column_names,
            "idx_range": [cfg.idx_offset, cfg.idx_offset + table.num_rows - 1],
        }
    )
    atomic.write_json(out / "manifest.json", manifest)
    if conditions:
        atomic.write_json(out / "conditions.json", conditions)
    shutil.rmtree(staging, ignore_errors=True)
    print(
        f"[generate] kept {manifest['kept']} samples {manifest['kept_per_label']} from {tally.prompts} prompts "
        f"in {seconds:.1f} s ({manifest['samples_per_s']} samples/s, {manifest['tokens_per_s']} tok/s) -> {out}",
        flush=True,
    )
    return manifest
