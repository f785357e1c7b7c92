"""``generate``: a balanced synthetic pool of N labelled texts, streamed through an engine by Ray Data.

The pipeline is a lazy prompt stream -> engine stage (vLLM replicas or transformers actors) ->
per-row postprocess, and the driver consumes the stream: it dedupes, counts drop reasons, and stops
as soon as every label has its share. The stream is an oversized range of prompt positions, so one
pipeline (one engine start-up) serves the whole run however many samples the model wastes; it is
bounded by ``max_prompts_per_sample``, after which the run fails with a clear error. What the
engines still hold when the stream stops is bounded by their in-flight limit (one engine batch per
replica) and reported in the manifest.

Kept rows are staged under ``OUT/.staging`` so an interrupted run resumes instead of regenerating
(a resumed run starts a new pass with fresh sampling seeds); the final Parquet and
``manifest.json`` appear atomically at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import queue
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sungen_ray.config import config_hash
from sungen_ray.data import atomic
from sungen_ray.data.labelled import POOL_SCHEMA
from sungen_ray.errors import SungenError
from sungen_ray.generation.engines import ENGINES, LIGHT_STAGE_CPUS, EngineOptions, engine_stage, in_flight_rows
from sungen_ray.generation.postprocess import clean_text, drop_reason
from sungen_ray.generation.prompts import PromptStream, label_targets
from sungen_ray.progress import EVERY_S, Progress
from sungen_ray.tasks.spec import TaskSpec, load_task

ROWS_PER_FILE = 250_000
FLUSH_EVERY_S = 60.0  # an interrupted run loses at most this much generation
STARTUP_NOTE_EVERY_S = 20.0  # "engines starting" lines while no output has come back yet
ATTEMPT_ROW_SPACING = 10**10  # row ids (= sampling seeds) of pass a start at a * spacing
# How a pool is produced, not what it holds: left out of a run's identity (and of the driver's
# stage hashes), so changing them resumes a run instead of refusing or redoing it.
EXECUTION_ONLY = (
    "out",
    "replicas",
    "use_gpu",
    "cpus_per_replica",
    "max_num_seqs",
    "stall_timeout_s",
    "max_prompts_per_sample",
)


@dataclass
class GenerateConfig:
    task: str
    num_samples: int
    out: str
    model: str | None = None
    engine: str = "vllm"
    replicas: int | None = None  # None: what the machine has (see engines.default_replicas)
    seed: int = 0
    batch_size: int = 64
    round: int = 0
    idx_offset: int = 0
    # The run fails (clearly, with its rows staged) once this many prompts per requested sample were
    # consumed without filling every label; the prompt stream is this long.
    max_prompts_per_sample: float = 4.0
    use_gpu: bool | None = None  # None: use GPUs if the Ray cluster has any
    cpus_per_replica: int | None = None  # None: 1 per CPU replica
    max_num_seqs: int | None = None  # engine batch; None: 256 on CPU, vLLM's default on GPU
    # Input blocks of batch_size * batches_per_block prompts: bigger blocks mean fewer tiny Ray tasks
    # feeding the engine, smaller ones finer-grained streaming and retries.
    batches_per_block: int = 4
    # feedback-guided generation: label name -> in-context example texts (see prompts.prompt_rows)
    examples: dict[str, list[str]] | None = None
    examples_per_prompt: int = 2
    # Fail when no engine output arrives for this long (0: never). ray.data.llm restarts an engine
    # that crashes on every request and retries it forever, which would otherwise hang the run.
    # Generous, because the first output waits for engine start-up (model load, on GPU compilation).
    stall_timeout_s: float = 1800.0

    def validate(self) -> None:
        if self.num_samples <= 0:
            raise SungenError(f"num_samples: must be > 0, got {self.num_samples}")
        if self.engine not in ENGINES:
            raise SungenError(f"engine: must be one of {list(ENGINES)}, got {self.engine!r}")
        if self.replicas is not None and self.replicas < 1:
            raise SungenError(f"replicas: must be >= 1 (or unset for the machine's CPUs), got {self.replicas}")
        if self.batch_size < 1:
            raise SungenError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.stall_timeout_s < 0:
            raise SungenError(f"stall_timeout_s: must be >= 0 (0 disables), got {self.stall_timeout_s}")
        if self.cpus_per_replica is not None and self.cpus_per_replica < 1:
            raise SungenError(f"cpus_per_replica: must be >= 1, got {self.cpus_per_replica}")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise SungenError(f"max_num_seqs: must be >= 1, got {self.max_num_seqs}")
        if not self.max_prompts_per_sample >= 1:
            raise SungenError(f"max_prompts_per_sample: must be >= 1, got {self.max_prompts_per_sample}")
        if self.idx_offset < 0:
            raise SungenError(f"idx_offset: must be >= 0, got {self.idx_offset}")

    def identity(self, spec: TaskSpec) -> dict:
        """What determines the output: a re-run with the same identity may resume or skip."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in EXECUTION_ONLY}
        d["spec"] = dataclasses.asdict(spec)
        return d


@dataclass
class Tally:
    kept: list[dict]
    dropped: Counter
    tokens: int = 0
    prompts: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    prompts_per_label: Counter = dataclasses.field(default_factory=Counter)
    # generation window, start-up excluded: first request into an engine .. last result out
    first_submit: float = math.inf
    last_done: float = -math.inf
    engine_seconds: float = 0.0  # summed over passes

    def close_window(self) -> None:
        if self.last_done > self.first_submit:
            self.engine_seconds += self.last_done - self.first_submit
        self.first_submit, self.last_done = math.inf, -math.inf


def _row_error(batch: dict, i: int) -> str:
    """ray.data.llm sends failed rows past our postprocess with ``__inference_error__`` set."""
    for col in ("error", "__inference_error__"):
        if col in batch and batch[col][i]:
            return str(batch[col][i])
    return ""


def _check_out_dir(out: Path, run_hash: str) -> dict | None:
    """Return the finished manifest if this exact run is already done; refuse dirs of other runs."""
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("config_hash") == run_hash and manifest.get("status") == "complete":
            return manifest
        raise SungenError(
            f"--out {out} holds another run (task={manifest.get('task')}, "
            f"num_samples={manifest.get('requested')}, seed={manifest.get('seed')}); "
            "choose a new --out or delete it"
        )
    staging_meta = out / ".staging" / "run.json"
    if staging_meta.is_file():
        if json.loads(staging_meta.read_text()).get("config_hash") != run_hash:
            raise SungenError(f"--out {out} holds an unfinished run with a different configuration; delete it first")
        return None
    if out.exists() and any(out.iterdir()):
        raise SungenError(f"--out {out} is not empty and holds no sungen-ray run; choose an empty or new directory")
    return None


def consume(
    stream,
    spec: TaskSpec,
    targets: list[int],
    tally: Tally,
    seen: set[str],
    label: str,
    on_flush: Callable[[], None] | None = None,
    progress: Progress | None = None,
) -> None:
    """Pull engine output, keep usable unique rows until every label is full.

    ``None`` items in ``stream`` are heartbeats (see ``watch_for_stall``): they only let progress
    print while engines start. ``on_flush`` is called every FLUSH_EVERY_S so kept rows reach disk
    while a long pass runs."""
    stop = spec.decoding.stop
    last_flush = time.perf_counter()
    per_label = Counter(r["label"] for r in tally.kept)
    start = time.perf_counter()
    first_output: float | None = None
    tokens0, prompts0 = tally.tokens, tally.prompts
    total = sum(targets)
    progress = progress or Progress(f"generate {label}", total, start=len(tally.kept))

    def report(force: bool = False) -> None:
        now = time.perf_counter()
        if first_output is None:
            if force or now - progress.last_print >= STARTUP_NOTE_EVERY_S:
                progress.last_print = now
                progress.note(f"engines starting, no output yet ({now - start:.0f} s)")
            return
        span = max(now - first_output, 1e-9)
        shares = ", ".join(f"{spec.labels[k].name} {per_label[k]}/{t}" for k, t in enumerate(targets))
        rows_s = (tally.prompts - prompts0) / span
        tok_s = (tally.tokens - tokens0) / span
        progress.update(len(tally.kept), f"{shares} | {rows_s:.1f} rows/s, {tok_s:.0f} tok/s", force=force)

    for batch in stream:
        if batch is None:
            report()
            continue
        if first_output is None:
            first_output = time.perf_counter()
            progress.note(f"first output after {first_output - start:.0f} s (engine start-up)")
        for i in range(len(batch["row_id"])):
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
                    "row_id": int(batch["row_id"][i]),
                    "text": text,
                    "label": lab,
                    "label_name": str(batch["label_name"][i]),
                    "logprob": lp,
                }
            )
        done = all(per_label[k] >= t for k, t in enumerate(targets))
        report(force=done)
        now = time.perf_counter()
        if on_flush is not None and now - last_flush >= FLUSH_EVERY_S:
            last_flush = now
            on_flush()
        if done:
            return


def run_engine(cfg: GenerateConfig, opts: EngineOptions, rows: list[dict], heartbeat_s: float | None = None):
    """A fixed list of prompt rows through the engine stage (the condition stage, benchmarks)."""
    import ray

    blocks = max(1, math.ceil(len(rows) / (cfg.batch_size * cfg.batches_per_block)))
    return stream_engine(cfg, opts, ray.data.from_items(rows, override_num_blocks=blocks), heartbeat_s)


def prompt_dataset(cfg: GenerateConfig, prompts: PromptStream, limit: int):
    """``limit`` prompt rows, made lazily by a light map stage over a range of positions: the
    engines pull only what they can take, and the driver stops the stream when every label is full."""
    import ray

    # One engine batch per block: every replica gets work from the start, and results come back
    # (and the driver can stop) one engine batch at a time instead of one large block at a time.
    ds = ray.data.range(limit, override_num_blocks=max(1, math.ceil(limit / cfg.batch_size)))
    return ds.map_batches(prompts, batch_size=cfg.batch_size, num_cpus=LIGHT_STAGE_CPUS)


def stream_engine(cfg: GenerateConfig, opts: EngineOptions, ds, heartbeat_s: float | None = None):
    ds = engine_stage(cfg.engine, ds, opts)
    return watch_for_stall(
        ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1), cfg.stall_timeout_s, heartbeat_s
    )


class GenerationStalled(SungenError):
    pass


def watch_for_stall(batches: Iterator, timeout_s: float, heartbeat_s: float | None = None) -> Iterator:
    """Yield ``batches`` (pulled by a helper thread) and raise if none arrives for ``timeout_s``.

    The Ray Data iterator blocks without a deadline, so it is drained by a thread and the caller
    waits on a queue with one. With ``heartbeat_s`` it also yields ``None`` whenever that long passes
    without a batch, so the caller can show progress during engine start-up. Leaving the loop early
    closes the Ray Data iterator, which shuts its pipeline (and the engine actors) down. On a stall
    the engine actors are left to the Ray session (the CLI and the driver exit on the error; a
    long-lived process should call ``ray.shutdown()``)."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def pump() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                put(("batch", batch))
            put(("done", None))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            put(("error", exc))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # ends the Ray Data execution now instead of whenever it is garbage-collected

    threading.Thread(target=pump, name="sungen-generate-stream", daemon=True).start()
    wait = min(x for x in (timeout_s or math.inf, heartbeat_s or math.inf))
    last_output = time.perf_counter()
    try:
        while True:
            try:
                kind, item = q.get(timeout=None if math.isinf(wait) else wait)
            except queue.Empty:
                if not timeout_s or time.perf_counter() - last_output < timeout_s:
                    yield None  # heartbeat
                    continue
                raise GenerationStalled(
                    f"generation stalled: no engine output for {timeout_s:g} s (stall_timeout_s). An engine that "
                    "fails on every request is restarted and retried by ray.data.llm without end; its error is in "
                    "the Ray logs (/tmp/ray/session_latest/logs, 'EngineCore'). Rows kept so far are staged; "
                    "re-running the same command resumes."
                ) from None
            if kind == "done":
                return
            if kind == "error":
                raise item
            last_output = time.perf_counter()
            yield item
    finally:
        stop.set()


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


def _load_staged(staging: Path) -> tuple[Tally, int]:
    """Everything earlier runs staged, and the number of the next attempt (an interrupted attempt
    counts as used: its rows are kept, and the next one samples with fresh seeds)."""
    tally = Tally(kept=[], dropped=Counter())
    chunks = sorted(staging.glob("attempt-*.json"))
    for meta_path in chunks:
        meta = json.loads(meta_path.read_text())
        tally.kept.extend(pq.read_table(meta_path.with_suffix(".parquet")).to_pylist())
        tally.dropped.update(meta["dropped"])
        tally.tokens += meta["tokens"]
        tally.prompts += meta["prompts"]
        tally.prompts_per_label.update({int(k): v for k, v in meta["prompts_per_label"].items()})
        tally.errors.extend(meta["errors"])
        tally.engine_seconds += meta["engine_seconds"]
    attempts = {int(p.name.split("-")[1].split(".")[0]) for p in chunks}
    return tally, (max(attempts) + 1 if attempts else 0)


def _snapshot(tally: Tally) -> Tally:
    return dataclasses.replace(
        tally,
        kept=list(tally.kept),
        dropped=Counter(tally.dropped),
        errors=list(tally.errors),
        prompts_per_label=Counter(tally.prompts_per_label),
    )


def _stage_chunk(staging: Path, name: str, before: Tally, after: Tally) -> None:
    """Stage the rows kept (and the counts) since ``before``; a run restarted later loads them back."""
    new_rows = after.kept[len(before.kept) :]
    base = staging / name
    atomic.write_parquet(base.with_suffix(".parquet"), pa.Table.from_pylist(new_rows) if new_rows else _empty_kept())
    atomic.write_json(
        base.with_suffix(".json"),
        {
            "dropped": dict(after.dropped - before.dropped),
            "tokens": after.tokens - before.tokens,
            "prompts": after.prompts - before.prompts,
            "prompts_per_label": dict(after.prompts_per_label - before.prompts_per_label),
            "engine_seconds": after.engine_seconds - before.engine_seconds,
            "errors": after.errors[len(before.errors) :],
        },
    )


def _empty_kept() -> pa.Table:
    return pa.table(
        {
            "row_id": pa.array([], pa.int64()),
            "text": pa.array([], pa.string()),
            "label": pa.array([], pa.int64()),
            "label_name": pa.array([], pa.string()),
            "logprob": pa.array([], pa.float64()),
        }
    )


def _pool_table(kept: list[dict], spec: TaskSpec, cfg: GenerateConfig, model_id: str) -> pa.Table:
    kept = sorted(kept, key=lambda r: r["row_id"])
    n = len(kept)
    return pa.table(
        {
            "idx": pa.array(np.arange(cfg.idx_offset, cfg.idx_offset + n, dtype=np.int64)),
            "text": pa.array([r["text"] for r in kept], pa.string()),
            "label": pa.array([r["label"] for r in kept], pa.int32()),
            "label_name": pa.array([r["label_name"] for r in kept], pa.string()),
            "task": pa.array([spec.name] * n, pa.string()),
            "round": pa.array([cfg.round] * n, pa.int16()),
            "model": pa.array([model_id] * n, pa.string()),
            "logprob": pa.array([r["logprob"] for r in kept], pa.float32()),
        },
        schema=POOL_SCHEMA,
    )


def generate(cfg: GenerateConfig, existing_texts: set[str] | None = None) -> dict:
    """Generate the pool described by ``cfg`` into ``cfg.out``; return its manifest."""
    from sungen_ray.plm.prepare import resolve_model
    from sungen_ray.ray_runtime import cluster_has_gpus, cluster_replicas, ensure_ray, machine_replicas

    cfg.validate()
    spec = load_task(cfg.task)
    out = Path(cfg.out)
    run_hash = config_hash(cfg.identity(spec))
    done = _check_out_dir(out, run_hash)
    if done is not None:
        print(f"[generate] {out} already holds this run ({done['kept']} samples); nothing to do", flush=True)
        return done
    model = resolve_model(cfg.model)
    staging = out / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    atomic.write_json(staging / "run.json", {"config_hash": run_hash, "config": dataclasses.asdict(cfg)})

    cpus = cfg.cpus_per_replica or 1
    replicas = cfg.replicas or machine_replicas(cpus)
    ensure_ray(min_cpus=replicas * cpus + 2)
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
    )
    t0 = time.perf_counter()
    engine_starts = 0
    if spec.condition is not None and not (staging / "conditions.json").is_file():
        engine_starts += 1
    t_cond = time.perf_counter()
    conditions = _conditions(cfg, spec, opts, staging)
    condition_seconds = time.perf_counter() - t_cond
    targets = label_targets(cfg.num_samples, spec.num_labels)
    tally, attempt = _load_staged(staging)
    if attempt:
        print(f"[generate] resuming: {len(tally.kept)} samples staged by {attempt} earlier pass(es)", flush=True)
    seen = set(existing_texts or ()) | {r["text"] for r in tally.kept}
    max_prompts = math.ceil(cfg.num_samples * cfg.max_prompts_per_sample)
    have = Counter(r["label"] for r in tally.kept)
    short = [max(0, t - have[k]) for k, t in enumerate(targets)]
    budget = max_prompts - tally.prompts
    if any(short) and budget > 0:
        # One pass: one pipeline, one engine start-up. Labels are mixed in proportion to what each
        # still needs, so a resumed run does not over-produce the label that was ahead.
        prompts = PromptStream(
            spec,
            short,
            seed=cfg.seed + attempt,
            start_id=attempt * ATTEMPT_ROW_SPACING,  # fresh seeds for every pass, also after a resume
            conditions=conditions,
            examples=cfg.examples,
            examples_per_prompt=cfg.examples_per_prompt,
        )
        progress = Progress(f"generate r{cfg.round}", cfg.num_samples, start=len(tally.kept))
        where = "GPU" if use_gpu else f"{cpus} CPU"
        progress.note(
            f"{sum(short)} samples to go; streaming up to {budget} prompts through {replicas} {cfg.engine} "
            f"replica(s) x {where}"
        )
        chunk = {"n": 0, "before": _snapshot(tally)}

        def flush(attempt=attempt, chunk=chunk):
            _stage_chunk(staging, f"attempt-{attempt:03d}-{chunk['n']:04d}", chunk["before"], tally)
            chunk["n"] += 1
            chunk["before"] = _snapshot(tally)

        engine_starts += 1
        stream = stream_engine(cfg, opts, prompt_dataset(cfg, prompts, budget), heartbeat_s=EVERY_S)
        try:
            consume(stream, spec, targets, tally, seen, f"r{cfg.round}", on_flush=flush, progress=progress)
        finally:  # also on Ctrl-C or a stall: what was kept reaches the staging dir
            progress.close()
            tally.close_window()
            flush()
        attempt += 1
    seconds = time.perf_counter() - t0

    have = Counter(r["label"] for r in tally.kept)
    manifest = {
        "status": "complete",
        "task": spec.name,
        "model": model,
        "engine": cfg.engine,
        "replicas": replicas,
        "cpus_per_replica": None if use_gpu else cpus,
        "seed": cfg.seed,
        "round": cfg.round,
        "config_hash": run_hash,
        "config": dataclasses.asdict(cfg),
        "requested": cfg.num_samples,
        "requested_per_label": {spec.labels[k].name: t for k, t in enumerate(targets)},
        "kept": len(tally.kept),
        "kept_per_label": {spec.labels[k].name: have[k] for k in range(spec.num_labels)},
        "prompts_sent": tally.prompts,
        "max_prompts": max_prompts,
        "attempts": attempt,  # passes over the prompt stream, an interrupted and resumed run included
        "engine_starts": engine_starts,  # pipelines this call started (condition stage included)
        "condition_seconds": round(condition_seconds, 2),
        # Rows the engines may still have held when the stream stopped: discarded, never counted.
        # dropped.surplus counts the rows that came back after their label was full.
        "in_flight_bound": in_flight_rows(cfg.engine, opts),
        "dropped": {k: tally.dropped.get(k, 0) for k in ("empty", "too_short", "duplicate", "engine_error", "surplus")},
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
            f"the model produced too few usable samples after {tally.prompts} prompts "
            f"(max_prompts_per_sample {cfg.max_prompts_per_sample:g} x {cfg.num_samples} samples); still short "
            f"{short} (dropped: {manifest['dropped']}). Staged rows are kept in {staging}; raise "
            "max_prompts_per_sample (the run resumes), lower the spec's min_words, or use a stronger --model"
        )

    table = _pool_table(tally.kept, spec, cfg, model)
    files = []
    for i, start in enumerate(range(0, table.num_rows, ROWS_PER_FILE)):
        # Data files live in data/ so `pq.read_table(OUT / "data")` never trips over manifest.json.
        name = f"data/pool-r{cfg.round:02d}-{i:05d}.parquet"
        atomic.write_parquet(out / name, table.slice(start, ROWS_PER_FILE))
        files.append(name)
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
