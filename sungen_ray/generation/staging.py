"""Resumable generation: kept rows are staged per pass under ``OUT/.staging``, so an
interrupted run loads them back instead of regenerating them."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sungen_ray.data import atomic
from sungen_ray.errors import SungenError


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
    # Re-executed work: Ray Data reruns the tasks of an engine replica whose node died, and a row can
    # then arrive twice. Row ids seen this pass catch the repeat; replicas seen count restarts.
    row_ids: set[int] = dataclasses.field(default_factory=set)
    engines: set[str] = dataclasses.field(default_factory=set)
    engine_restarts: int = 0  # summed over passes
    # Row ids consumed (kept or dropped), in arrival order: a resumed pass skips them and goes on
    # with the same prompts and seeds, so it ends as an uninterrupted pass would.
    consumed: list[int] = dataclasses.field(default_factory=list)
    startup_seconds: float | None = None  # this call's wait for the first engine output (start-up)
    first_row: dict | None = None  # where that wait went (see pipeline.first_row_breakdown)

    def close_window(self, replicas: int) -> None:
        if self.last_done > self.first_submit:
            self.engine_seconds += self.last_done - self.first_submit
        self.first_submit, self.last_done = math.inf, -math.inf
        self.engine_restarts += max(0, len(self.engines) - replicas)
        self.engines, self.row_ids = set(), set()


def check_out_dir(out: Path, run_hash: str) -> dict | None:
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


@dataclass
class Resume:
    """An interrupted pass to go on with: its prompt plan, and the row ids it already consumed."""

    attempt: int
    plan: dict  # counts, seed, start_id (see write_plan)
    consumed: set[int]
    next_chunk: int


def write_plan(staging: Path, attempt: int, counts: list[int], seed: int, start_id: int) -> None:
    """What a pass streams, written before it starts: a resumed run rebuilds the same prompt stream."""
    atomic.write_json(staging / f"pass-{attempt:03d}.json", {"counts": counts, "seed": seed, "start_id": start_id})


def load_staged(staging: Path) -> tuple[Tally, int, Resume | None]:
    """Everything earlier runs staged; the number of the next pass; and the last pass to go on with
    if it was interrupted (killed, stalled, Ctrl-C) before it ended. A pass that ended (labels full
    or prompts used up) is done: a further pass samples fresh row ids and seeds."""
    tally = Tally(kept=[], dropped=Counter())
    chunks = sorted(staging.glob("attempt-*.json"))
    ended: dict[int, bool] = {}
    consumed: dict[int, set[int]] = {}
    chunk_count: Counter = Counter()
    for meta_path in chunks:
        meta = json.loads(meta_path.read_text())
        a = int(meta_path.name.split("-")[1])
        chunk_count[a] += 1
        ended[a] = ended.get(a, False) or meta.get("ended", "row_ids" not in meta)  # older stagings: ended
        consumed.setdefault(a, set()).update(meta.get("row_ids", ()))
        tally.kept.extend(pq.read_table(meta_path.with_suffix(".parquet")).to_pylist())
        tally.dropped.update(meta["dropped"])
        tally.tokens += meta["tokens"]
        tally.prompts += meta["prompts"]
        tally.prompts_per_label.update({int(k): v for k, v in meta["prompts_per_label"].items()})
        tally.errors.extend(meta["errors"])
        tally.engine_seconds += meta["engine_seconds"]
        tally.engine_restarts += meta.get("engine_restarts", 0)
    plans = {int(p.stem.split("-")[1]): p for p in staging.glob("pass-*.json")}
    last = max([*chunk_count, *plans], default=-1)
    if last >= 0 and last in plans and not ended.get(last, False):
        plan = json.loads(plans[last].read_text())
        return tally, last, Resume(last, plan, consumed.get(last, set()), chunk_count[last])
    return tally, last + 1, None


def snapshot(tally: Tally) -> Tally:
    return dataclasses.replace(
        tally,
        kept=list(tally.kept),
        dropped=Counter(tally.dropped),
        errors=list(tally.errors),
        prompts_per_label=Counter(tally.prompts_per_label),
        row_ids=set(),
        engines=set(),
        consumed=list(tally.consumed),
    )


def stage_chunk(staging: Path, name: str, before: Tally, after: Tally, ended: bool = False) -> None:
    """Stage the rows kept (and the counts, and the row ids consumed) since ``before``; a run
    restarted later loads them back. ``ended``: the pass is over, nothing to go on with."""
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
            "engine_restarts": after.engine_restarts - before.engine_restarts,
            "errors": after.errors[len(before.errors) :],
            "row_ids": after.consumed[len(before.consumed) :],
            "ended": ended,
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
            "channel_own": pa.array([], pa.float64()),
        }
    )
