"""``generate``: a balanced synthetic pool of N labelled texts, streamed through an engine by Ray Data.

The pipeline is a lazy prompt stream -> a light stage that hands each batch to an engine replica
(vLLM or transformers actors that outlive the stream, ``engine_pool.py``), and the driver consumes
the stream: it dedupes, counts drop reasons, and stops as soon as every label has its share. The
stream is an oversized range of prompt positions, so one pass serves the whole run however many
samples the model wastes; it is bounded by ``max_prompts_per_sample``, after which the run fails
with a clear error. What the engines still hold when the stream stops (about one engine batch per
replica, reported in the manifest) is aborted, so the next stream starts on idle engines. The
driver passes its own ``EnginePool`` so every round (and the condition stage) reuses one set of
replicas; ``generate`` alone starts its own, once per call.

Kept rows are staged under ``OUT/.staging`` (``staging.py``) so an interrupted run resumes instead
of regenerating (a resumed run goes on with the interrupted pass's prompts and seeds); the final Parquet
(``pool_writer.py``) and ``manifest.json`` appear atomically at the end.
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
from sungen_ray.generation.engine_pool import EnginePool
from sungen_ray.generation.engines import LIGHT_STAGE_CPUS, EngineOptions, in_flight_rows
from sungen_ray.generation.pool_writer import own_scores, pool_table, write_pool
from sungen_ray.generation.postprocess import clean_text, drop_reason
from sungen_ray.generation.prompts import PromptStream, label_targets
from sungen_ray.generation.row_limit import RowLimit
from sungen_ray.generation.staging import Tally, check_out_dir, load_staged, snapshot, stage_chunk, write_plan
from sungen_ray.generation.watchdog import stream_dataset
from sungen_ray.parallel.progress import EVERY_S, MIN_RATE_WINDOW_S, Progress
from sungen_ray.tasks.spec import TaskSpec, load_task

STARTUP_NOTE_EVERY_S = 60.0  # "engines starting" lines while no output has come back yet
ATTEMPT_ROW_SPACING = 10**10  # row ids (= sampling seeds) of pass a start at a * spacing


def _row_error(batch: dict, i: int) -> str:
    return str(batch["error"][i]) if "error" in batch and batch["error"][i] else ""


def first_row_breakdown(batch: dict, streamed_at: float, arrived_at: float) -> dict | None:
    """Where the wait for the first engine output went, from the first batch's own timestamps (wall
    clock): engines starting (actors, vLLM imports, model load, KV cache) until the first request
    entered one, that batch's generation, and its hand-off to the driver. None for rows without
    timestamps (an engine that failed the batch)."""
    if "t_submit" not in batch:
        return None
    submitted = np.asarray(batch["t_submit"], dtype=np.float64)
    done = np.asarray(batch["t_done"], dtype=np.float64)
    ok = np.isfinite(submitted) & np.isfinite(done)
    if not ok.any():
        return None
    first_in, out = float(submitted[ok].min()), float(done[ok].max())
    return {
        "engines_start_s": round(first_in - streamed_at, 2),
        "first_batch_s": round(out - first_in, 2),
        "hand_off_s": round(arrived_at - out, 2),
        "total_s": round(arrived_at - streamed_at, 2),
    }


def consume(
    stream,
    spec: TaskSpec,
    targets: list[int],
    tally: Tally,
    seen: set[str],
    label: str,
    on_flush: Callable[[], None] | None = None,
    progress: Progress | None = None,
    flush_every_s: float = 60.0,
    engines_up: bool = False,
    own_score: Callable[..., float] | None = None,
    row_limit: RowLimit | None = None,
) -> None:
    """Pull engine output, keep usable unique rows until every label is full.

    ``engines_up``: the replicas were running before this stream (the driver's, from an earlier
    round), so the wait for the first output is the first engine batch alone.

    ``None`` items in ``stream`` are heartbeats (see ``watch_for_stall``): they only let progress
    print while engines start. ``on_flush`` is called every ``flush_every_s`` so kept rows reach
    disk while a long pass runs. ``own_score``: each kept row's own-label channel score from its
    generation (``plm.channel.OwnScore``), staged with it. ``row_limit``: told after each batch
    how far the stream still has to go (``row_limit.py``)."""
    stop = spec.decoding.stop
    last_flush = time.perf_counter()
    per_label = Counter(r["label"] for r in tally.kept)
    start, streamed_at = time.perf_counter(), time.time()
    first_output: float | None = None
    tokens0, prompts0 = tally.tokens, tally.prompts
    total = sum(targets)
    next_row = row_limit.first_row if row_limit is not None else 0  # one past the highest row id read
    progress = progress or Progress(f"generate {label}", total, start=len(tally.kept))

    def report(force: bool = False) -> None:
        now = time.perf_counter()
        if first_output is None:
            if force or now - progress.last_print >= STARTUP_NOTE_EVERY_S:
                progress.last_print = now
                waiting = "first engine batch decoding" if engines_up else "engines starting"
                progress.note(f"{waiting}, no output yet ({now - start:.0f} s)")
            return
        span = now - first_output
        shares = ", ".join(f"{spec.labels[k].name} {per_label[k]}/{t}" for k, t in enumerate(targets))
        if span < MIN_RATE_WINDOW_S:  # the first batch arrives at once: no rate yet
            progress.update(len(tally.kept), shares, force=force)
            return
        rows_s = (tally.prompts - prompts0) / span
        tok_s = (tally.tokens - tokens0) / span
        progress.update(len(tally.kept), f"{shares} | {rows_s:.1f} rows/s, {tok_s:.0f} tok/s", force=force)

    for batch in stream:
        if batch is None:
            report()
            continue
        if first_output is None:
            first_output = time.perf_counter()
            if tally.startup_seconds is None:
                tally.startup_seconds = first_output - start
                tally.first_row = first_row_breakdown(batch, streamed_at, time.time())
            why = "the first engine batch" if engines_up else "engine start-up and the first engine batch"
            progress.note(f"first output after {first_output - start:.0f} s ({why})")
        # in row-id order: an engine may return a batch's rows as they finish, and which rows fill
        # a label must not depend on that
        for i in np.argsort(np.asarray(batch["row_id"], dtype=np.int64), kind="stable"):
            row_id = int(batch["row_id"][i])
            if row_id in tally.row_ids:  # a re-executed task's repeat; the first copy was counted
                tally.dropped["reexecuted"] += 1
                continue
            tally.row_ids.add(row_id)
            tally.consumed.append(row_id)
            next_row = max(next_row, row_id + 1)
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
            own = math.nan
            if own_score is not None and "logprob_sum" in batch:
                own = own_score(
                    str(batch["prompt"][i]), lab, text, batch["token_ids"][i], float(batch["logprob_sum"][i])
                )
            tally.kept.append(
                {
                    "row_id": row_id,
                    "text": text,
                    "label": lab,
                    "label_name": str(batch["label_name"][i]),
                    "logprob": lp,
                    "channel_own": own,
                }
            )
        done = all(per_label[k] >= t for k, t in enumerate(targets))
        if row_limit is not None and not done:
            labels = range(len(targets))
            row_limit.update(
                next_row,
                [targets[k] - per_label[k] for k in labels],
                [per_label[k] for k in labels],
                [tally.prompts_per_label[k] for k in labels],
            )
        report(force=done)
        now = time.perf_counter()
        if on_flush is not None and now - last_flush >= flush_every_s:
            last_flush = now
            on_flush()
        if done:
            return


def run_engine(
    cfg: GenerateConfig,
    opts: EngineOptions,
    rows: list[dict],
    heartbeat_s: float | None = None,
    engines: EnginePool | None = None,
):
    """A fixed list of prompt rows through the engines (the condition stage, benchmarks); without
    ``engines``, through replicas started for this call and stopped after it."""
    import ray

    blocks = max(1, math.ceil(len(rows) / (cfg.batch_size * cfg.batches_per_block)))
    own = engines is None
    engines = (engines or EnginePool()).use(cfg.engine, opts)
    try:
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        batches, stream = stream_engine(cfg, opts, ds, blocks, engines, heartbeat_s)
        try:
            yield from batches  # closed with this generator, which ends the stream
        finally:
            engines.ends.pop(stream, None)  # kept by end_stream for a round's manifest only
    finally:
        if own:
            engines.shutdown()


def prompt_dataset(cfg: GenerateConfig, prompts: PromptStream, limit: int):
    """Prompt rows for positions ``prompts.first`` .. ``limit - 1``, made lazily by a light map
    stage over a range: the engines pull only what they can take, and the driver stops the stream
    when every label is full. Returns (dataset, its number of blocks)."""
    import ray

    # One engine batch per block: every replica gets work from the start, and results come back
    # (and the driver can stop) one engine batch at a time instead of one large block at a time.
    # The range is padded to whole batches (positions past the limit are dropped): range splits
    # n evenly, and blocks a few rows short of a batch were bundled two to a replica-stage task,
    # which doubled the rows in flight and held finished batches back (RESULTS, hand-off).
    n = max(0, limit - prompts.first)
    blocks = max(1, math.ceil(n / cfg.batch_size))
    ds = ray.data.range(blocks * cfg.batch_size, override_num_blocks=blocks)
    stream = dataclasses.replace(prompts, last=limit)
    return ds.map_batches(stream, batch_size=cfg.batch_size, num_cpus=LIGHT_STAGE_CPUS), blocks


def stream_engine(
    cfg: GenerateConfig, opts: EngineOptions, ds, blocks: int, engines: EnginePool, heartbeat_s: float | None = None
):
    """``ds``'s prompt rows (``blocks`` blocks) through ``engines`` (serving ``opts``), watched.
    Returns (batches, the stream's id for ``engines.set_limit``)."""
    out, stream = engines.stage(ds, opts.decoding, opts.seed, opts.batch_size, blocks)
    batches = stream_dataset(
        out, cfg.stall_timeout_s, heartbeat_s, ordered=cfg.ordered, after=lambda: engines.end_stream(stream)
    )
    return batches, stream


def _conditions(
    cfg: GenerateConfig, spec: TaskSpec, opts: EngineOptions, staging: Path, engines: EnginePool
) -> list[str] | None:
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
    for batch in run_engine(cfg, copts, rows, engines=engines):
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


def portable_config(cfg: GenerateConfig, model_id: str) -> dict:
    """The run's settings as a manifest records them: a local path (``out``, a spec file, a model
    directory) cut to its last part and the model named by its id, so a pool moved to another
    machine or shared names no directory of this one. The run's identity is ``config_hash``."""
    d = dataclasses.asdict(cfg)
    d["out"] = Path(d["out"]).name
    if d["task"].endswith((".yaml", ".yml")) or "/" in d["task"]:  # a spec file (see tasks.spec.load_task)
        d["task"] = Path(d["task"]).name
    if d["model"] is not None:
        d["model"] = model_id
    return d


def generate(cfg: GenerateConfig, existing_texts: set[str] | None = None, engines: EnginePool | None = None) -> dict:
    """Generate the pool described by ``cfg`` into ``cfg.out``; return its manifest.

    ``engines``: replicas to reuse (the driver's, kept across rounds); None starts them for this
    call (when there is anything to generate) and stops them at its end, on every exit path."""
    own = engines is None
    engines = engines or EnginePool()
    try:
        return _generate(cfg, existing_texts, engines)
    finally:
        if own:
            engines.shutdown()


def _generate(cfg: GenerateConfig, existing_texts: set[str] | None, engines: EnginePool) -> dict:
    from sungen_ray.parallel.ray_runtime import (
        cluster_has_gpus,
        cluster_replicas,
        default_cpus_per_replica,
        ensure_ray,
        machine_replicas,
    )
    from sungen_ray.plm.channel import OwnScore, write_own_scores
    from sungen_ray.plm.identity import model_identity
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
    generator = model_identity(model)  # what the pool and manifest name: never this machine's path
    staging = out / ".staging"
    try:
        staging.mkdir(parents=True, exist_ok=True)
        atomic.write_json(staging / "run.json", {"config_hash": run_hash, "config": dataclasses.asdict(cfg)})
    except OSError as exc:  # read-only mount, no permission, missing parent on a read-only fs
        raise SungenError(f"--out {out}: cannot write there ({exc.strerror or exc})") from exc

    cpus = cfg.cpus_per_replica or default_cpus_per_replica(cfg.engine, cfg.replicas)
    replicas = cfg.replicas or machine_replicas(cpus)
    t_ray = time.perf_counter()
    ensure_ray(min_cpus=replicas * cpus + 2)
    ray_start_s = time.perf_counter() - t_ray  # ~0 where a driver or cluster already runs Ray
    use_gpu = cluster_has_gpus() if cfg.use_gpu is None else cfg.use_gpu
    if cfg.replicas is None:
        replicas = cluster_replicas(cpus, use_gpu, replicas)
    opts = EngineOptions(
        model=model,
        decoding=spec.decoding,
        replicas=replicas,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        use_gpu=use_gpu,
        cpus_per_replica=cpus,
        max_num_seqs=cfg.max_num_seqs,
        resources=dict(cfg.replica_resources or {}),
        dtype=cfg.dtype,
    )
    t0 = time.perf_counter()
    starts_before = engines.starts
    t_cond = time.perf_counter()
    conditions = _conditions(cfg, spec, opts, staging, engines)
    condition_seconds = time.perf_counter() - t_cond
    targets = label_targets(cfg.num_samples, spec.num_labels)
    tally, attempt, resume = load_staged(staging)
    if attempt or resume:
        print(f"[generate] resuming: {len(tally.kept)} samples staged by earlier run(s)", flush=True)
    seen = set(existing_texts or ()) | {r["text"] for r in tally.kept}
    max_prompts = math.ceil(cfg.num_samples * cfg.max_prompts_per_sample)
    have = Counter(r["label"] for r in tally.kept)
    short = [max(0, t - have[k]) for k, t in enumerate(targets)]
    if resume is not None:
        # Go on with the interrupted pass: the same prompts and seeds, minus the rows it consumed,
        # so the pool ends as an uninterrupted run's would (rows come back in order, see
        # stream_dataset).
        counts, seed, start_id = resume.plan["counts"], resume.plan["seed"], resume.plan["start_id"]
        limit = max_prompts - (tally.prompts - len(resume.consumed))  # this pass's positions
        first_chunk = resume.next_chunk
    else:
        # A new pass: labels mixed in proportion to what each still needs, so a resumed run does not
        # over-produce the label that was ahead; fresh row ids (= sampling seeds).
        counts, seed, start_id = short, cfg.seed + attempt, attempt * ATTEMPT_ROW_SPACING
        limit = max_prompts - tally.prompts
        first_chunk = 0
    consumed = resume.consumed if resume is not None else set()
    stream_end = {"aborted": 0, "held": 0}  # what the engines held when the stream ended (end_stream)
    first = 0
    while start_id + first in consumed:
        first += 1
    if any(short) and limit > first:
        # One pass: one pipeline, one engine start-up.
        if resume is None:
            write_plan(staging, attempt, counts, seed, start_id)
        prompts = PromptStream(
            spec,
            counts,
            seed=seed,
            start_id=start_id,
            conditions=conditions,
            examples=cfg.examples,
            examples_per_prompt=cfg.examples_per_prompt,
            first=first,
            skip=frozenset(r for r in consumed if r >= start_id + first),
        )
        progress = Progress(f"generate r{cfg.round}", cfg.num_samples, start=len(tally.kept))
        where = "GPU" if use_gpu else f"{cpus} CPU"
        progress.note(
            f"{sum(short)} samples to go; streaming up to {limit - first} prompts through {replicas} {cfg.engine} "
            f"replica(s) x {where}"
        )
        chunk = {"n": first_chunk, "before": snapshot(tally)}

        def flush(ended: bool = False, attempt=attempt, chunk=chunk):
            stage_chunk(staging, f"attempt-{attempt:03d}-{chunk['n']:04d}", chunk["before"], tally, ended)
            chunk["n"] += 1
            chunk["before"] = snapshot(tally)

        ended = False
        engines_up = engines.serves(cfg.engine, opts)  # an earlier round's or this call's condition stage's
        engines.use(cfg.engine, opts)
        ds, blocks = prompt_dataset(cfg, prompts, limit)
        stream, stream_id = stream_engine(cfg, opts, ds, blocks, engines, heartbeat_s=EVERY_S)
        row_limit = RowLimit(
            send=lambda row, stream_id=stream_id: engines.set_limit(stream_id, row),
            first_row=start_id + first,
            batch_size=cfg.batch_size,
            shares=[c / sum(counts) for c in counts],
        )
        try:
            consume(
                stream,
                spec,
                targets,
                tally,
                seen,
                f"r{cfg.round}",
                on_flush=flush,
                progress=progress,
                flush_every_s=cfg.flush_every_s,
                engines_up=engines_up,
                own_score=OwnScore(spec, model) if cfg.engine == "vllm" else None,
                row_limit=row_limit,
            )
            ended = True
        finally:  # also on Ctrl-C or a stall: what was kept reaches the staging dir
            # Close the stream now, not when the generator is collected: a round's stream left open
            # kept its engines generating the rest of the oversized prompt range beside the next
            # round's (see generation/watchdog.py, end_execution).
            stream.close()
            progress.close()
            tally.close_window(opts.replicas)
            flush(ended)
        stream_end.update(engines.ends.pop(stream_id, {}))
        attempt += 1
    seconds = time.perf_counter() - t0
    engine_starts = engines.starts - starts_before

    have = Counter(r["label"] for r in tally.kept)
    own = own_scores(tally.kept)
    manifest = {
        "status": "complete",
        "task": spec.name,
        "model": generator["id"],
        "generator": generator,
        "engine": cfg.engine,
        "replicas": replicas,
        "cpus_per_replica": None if use_gpu else cpus,
        "seed": cfg.seed,
        "round": cfg.round,
        "config_hash": run_hash,
        "config": portable_config(cfg, generator["id"]),
        "requested": cfg.num_samples,
        "requested_per_label": {spec.labels[k].name: t for k, t in enumerate(targets)},
        "kept": len(tally.kept),
        "kept_per_label": {spec.labels[k].name: have[k] for k in range(spec.num_labels)},
        "prompts_sent": tally.prompts,
        "max_prompts": max_prompts,
        "attempts": attempt,  # passes over the prompt stream (an interrupted pass that was resumed counts once)
        # replicas this call started (0 when it ran on the driver's, started by an earlier round)
        "engine_starts": engine_starts,
        "engine_dtypes": engines.dtypes(),  # what dtype: auto became on the replicas' nodes
        "condition_seconds": round(condition_seconds, 2),
        # Rows the engines may still have held when the stream stopped: discarded, never counted.
        # dropped.surplus counts the rows that came back after their label was full.
        "in_flight_bound": in_flight_rows(cfg.engine, opts),
        # When the stream ended: rows the engines were decoding (aborted, work lost) and rows the
        # driver's row limit had held back from them (row_limit.py)
        "stream_end_rows": stream_end,
        "dropped": {
            k: tally.dropped.get(k, 0)
            for k in ("empty", "too_short", "duplicate", "engine_error", "surplus", "reexecuted")
        },
        # engine replicas that started over mid-pass (node loss, crash): their lost work was redone
        "engine_restarts": tally.engine_restarts,
        "engine_error_examples": tally.errors,
        "conditions": len(conditions) if conditions else 0,
        "tokens_generated": tally.tokens,
        "seconds": round(seconds, 2),
        "samples_per_s": round(len(tally.kept) / seconds, 3) if seconds else None,
        "tokens_per_s": round(tally.tokens / seconds, 2) if seconds else None,
        # the same rates over generation time only (engine start-up and condition stage excluded)
        "engine_seconds": round(tally.engine_seconds, 2),
        # from streaming the prompts to the first engine output: engine start-up, as the user waits it
        "startup_seconds": None if tally.startup_seconds is None else round(tally.startup_seconds, 2),
        # this call's wait for its first row, broken down (README, "Time to first row")
        "time_to_first_row": {"ray_start_s": round(ray_start_s, 2), **(tally.first_row or {})},
        "engine_tokens_per_s": round(tally.tokens / tally.engine_seconds, 2) if tally.engine_seconds else None,
        # kept rows whose own-label channel score came with their generation (plm.channel.OwnScore)
        "channel_own_scores": int(np.isfinite(own).sum()),
        "engine_samples_per_s": round(len(tally.kept) / tally.engine_seconds, 3) if tally.engine_seconds else None,
    }
    short = {spec.labels[k].name: t - have[k] for k, t in enumerate(targets) if have[k] < t}
    if short:
        manifest["status"] = "incomplete"
        atomic.write_json(staging / "manifest.partial.json", manifest)
        raise SungenError(
            f"the model produced too few usable samples after {tally.prompts} prompts "
            f"(max_prompts_per_sample {cfg.max_prompts_per_sample:g} x {cfg.num_samples} samples); still short "
            f"{short} (dropped: {manifest['dropped']}). Staged rows are kept in {staging}; raise "
            "max_prompts_per_sample (the run resumes), lower the spec's min_words, or use a stronger --model"
        )

    table = pool_table(tally.kept, spec, cfg, generator["id"])
    files = write_pool(out, table, cfg.round)
    write_own_scores(out, table.column("idx").to_numpy(), own)
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
        f"[generate r{cfg.round}] kept {manifest['kept']} samples {manifest['kept_per_label']} from {tally.prompts} "
        f"prompts in {seconds:.1f} s ({manifest['engine_tokens_per_s']} engine tok/s, "
        f"{manifest['dropped']['too_short']} too short, {manifest['dropped']['surplus']} surplus, "
        f"{engine_starts} engine start(s)) -> {out}",
        flush=True,
    )
    return manifest
