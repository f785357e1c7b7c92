"""Node loss on a real multi-node Ray cluster: generation and reweighting lose nothing, repeat nothing.

One 3-node ``ray.cluster_utils.Cluster`` (see ``conftest.multinode``) is shared by the tests here;
each test kills a worker node mid-run (the raylet and every process on it, as a reclaimed spot node)
and the cluster gets a fresh node back afterwards.
"""

from __future__ import annotations

import threading
from collections import Counter

import pyarrow.parquet as pq
import pytest

from sungen_ray.generation import pipeline
from sungen_ray.generation.pipeline import GenerateConfig, generate

pytestmark = pytest.mark.slow


def _in_thread(fn, *args, **kwargs):
    box: dict = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _result(thread, box, timeout_s: float):
    thread.join(timeout_s)
    assert not thread.is_alive(), f"run did not finish within {timeout_s} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_generation_survives_losing_the_engine_node(multinode, default_model, tmp_path, monkeypatch):
    """The transformers replica runs on a worker node; that node dies after the first rows arrived."""
    n = 40
    arrived: list[tuple[int, str, str]] = []  # (row_id, engine, text) of every row the driver received
    first_rows = threading.Event()
    real_consume = pipeline.consume

    def observed_consume(stream, *args, **kwargs):
        def watch():
            for batch in stream:
                arrived.extend(zip(map(int, batch["row_id"]), batch["engine"], batch["generated_text"]))
                first_rows.set()
                yield batch

        return real_consume(watch(), *args, **kwargs)

    monkeypatch.setattr(pipeline, "consume", observed_consume)
    out = tmp_path / "pool"
    cfg = GenerateConfig(
        task="sst2",
        num_samples=n,
        out=str(out),
        model=default_model,
        engine="transformers",
        batch_size=4,
        batches_per_block=1,
        seed=11,
        replica_resources={"worker": 1},
        stall_timeout_s=300,
    )
    thread, box = _in_thread(generate, cfg)
    assert first_rows.wait(240), "no engine output arrived"
    engine_node = arrived[0][1].split("/")[0]
    multinode.replace(engine_node)  # rows are in flight: later blocks are queued or running there
    manifest = _result(thread, box, 400)

    pool = pq.read_table(out / "data").to_pylist()
    assert len(pool) == manifest["kept"] == n
    assert len({r["idx"] for r in pool}) == n and len({r["text"] for r in pool}) == n
    assert Counter(r["label"] for r in pool) == Counter({0: n // 2, 1: n // 2})
    engines = {e for _, e, _ in arrived}
    assert len(engines) >= 2 and {e.split("/")[0] for e in engines} - {engine_node}, engines
    assert manifest["engine_restarts"] >= 1
    # every row that arrived is accounted for exactly once: kept, dropped for a reason, or a repeat
    repeats = len(arrived) - len({r for r, _, _ in arrived})
    assert manifest["dropped"]["reexecuted"] == repeats
    assert manifest["prompts_sent"] == len(arrived) - repeats
    assert sum(manifest["dropped"].values()) - repeats + n == manifest["prompts_sent"]
    assert not (out / ".staging").exists()
