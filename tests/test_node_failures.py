"""Node loss on a real multi-node Ray cluster: generation and reweighting lose nothing, repeat nothing.

One 3-node ``ray.cluster_utils.Cluster`` (see ``conftest.multinode``) is shared by the tests here;
each test kills a worker node mid-run (the raylet and every process on it, as a reclaimed spot node)
and the cluster gets a fresh node back afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest

from sungen_ray.generation import pipeline
from sungen_ray.generation.config import GenerateConfig
from sungen_ray.generation.pipeline import generate

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
    from tests.test_pipeline_driver import SHORT_SST2

    n = 24  # six engine batches: the first arrives, the node dies with the rest queued or running
    arrived: list[tuple[int, str, str]] = []  # (row_id, engine, text) of every row the driver received
    first_rows = threading.Event()
    real_consume = pipeline.consume

    def observed_consume(stream, *args, **kwargs):
        def watch():
            for batch in stream:
                if batch is None:  # a heartbeat of the stall watchdog, no rows
                    yield batch
                    continue
                arrived.extend(zip(map(int, batch["row_id"]), batch["engine"], batch["generated_text"]))
                first_rows.set()
                yield batch

        return real_consume(watch(), *args, **kwargs)

    monkeypatch.setattr(pipeline, "consume", observed_consume)
    out = tmp_path / "pool"
    cfg = GenerateConfig(
        task=SHORT_SST2,  # 20-token replies: what is tested is the node loss, not the texts
        num_samples=n,
        out=str(out),
        model=default_model,
        engine="transformers",
        replicas=1,
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


REWEIGHT_ITERS = 6


def _reweight(pool, out):
    from sungen_ray.config import from_dict
    from sungen_ray.reweight.config import ReweightConfig
    from sungen_ray.reweight.distributed import run_distributed
    from tests.test_reweight_distributed import config_dict

    cfg = from_dict(ReweightConfig, {**config_dict(), "outer_iters": REWEIGHT_ITERS})
    # SPREAD + one "worker" unit each: rank 0 and rank 1 start on different worker nodes; after a
    # node loss both fit on the node left (2 CPUs, worker: 2)
    return run_distributed(
        pool, out, cfg, workers=2, max_failures=2, worker_resources={"worker": 1}, placement_strategy="SPREAD"
    )


def test_reweighting_survives_losing_the_node_of_rank_1(multinode, tmp_path):
    import torch

    from sungen_ray.data.atomic import read_json
    from tests.test_reweight_distributed import make_pool

    multinode.restore()
    pool = make_pool(tmp_path / "pool")
    reference = _reweight(pool, tmp_path / "uninterrupted")
    assert reference["iterations_run"] == REWEIGHT_ITERS

    out = tmp_path / "interrupted"
    run_dir = out / "checkpoints" / reference["run_name"]
    thread, box = _in_thread(_reweight, pool, out)
    deadline = time.time() + 240
    while not (run_dir / "iter-000002" / "shard-00001.pt").is_file():
        assert time.time() < deadline and thread.is_alive(), box.get("error", "no checkpoint of iteration 2")
        time.sleep(0.2)
    time.sleep(0.5)  # let the upload of the checkpoint finish
    saved = torch.load(run_dir / "iter-000002" / "shard-00001.pt", weights_only=True)
    rank1_node = saved["node_id"]
    rank0_node = torch.load(run_dir / "iter-000002" / "shard-00000.pt", weights_only=True)["node_id"]
    assert rank1_node != rank0_node  # SPREAD put them on different nodes, so only rank 1's dies
    node = multinode.node_of(rank1_node)
    multinode.cluster.remove_node(node, allow_graceful=False)  # no replacement: restart on the nodes left
    multinode.workers.remove(node)
    summary = _result(thread, box, 400)

    metrics = read_json(out / "metrics.json")
    assert [m["iteration"] for m in metrics["iterations"]] == list(range(1, REWEIGHT_ITERS + 1))
    assert summary["iterations_run"] == REWEIGHT_ITERS
    last = torch.load(run_dir / f"iter-{REWEIGHT_ITERS:06d}" / "shard-00001.pt", weights_only=True)
    assert last["node_id"] != rank1_node  # rank 1 really ran somewhere else after the loss
    ref, got = pq.read_table(tmp_path / "uninterrupted" / "weights.parquet"), pq.read_table(out / "weights.parquet")
    assert ref.column("idx").equals(got.column("idx"))
    assert ref.column("theta").equals(got.column("theta"))  # bit-identical
    multinode.restore()


def _tree_digest(root) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_driver_killed_mid_round_resubmitted_skips_finished_stages(multinode, default_model, tmp_path):
    """The driver runs as a Ray job does (``RAY_ADDRESS`` = the 3-node cluster) and is SIGKILLed while
    round 1 generates; the resubmitted driver finishes without redoing anything round 0 finished.

    Each driver runs in its own empty working dir and ``TMPDIR``, deleted before the resubmission:
    everything the resume needs lives under ``out`` (shared storage), not on the driver's node."""
    import os
    import shutil
    import signal
    import subprocess
    import sys

    from tests.test_pipeline_driver import DEMO, REPO, _sets, redone, set_flags, stage_stamps

    multinode.restore()
    out = tmp_path / "shared" / "run"

    def start(n: int):
        cwd, tmp = tmp_path / f"cwd{n}", tmp_path / f"tmp{n}"
        cwd.mkdir()
        tmp.mkdir()
        env = {
            **os.environ,
            "RAY_ADDRESS": multinode.address,
            "PYTHONPATH": str(REPO),
            "TMPDIR": str(tmp),
            "PYTHONUNBUFFERED": "1",
        }
        # two replicas: unset, a joined cluster gets one per CPU but one (four here, on 2 cores)
        replicas = set_flags(["generation.replicas=2"])
        cmd = [sys.executable, "-m", "jobs.sungen_pipeline", "--config", str(DEMO), *_sets(out, None), *replicas]
        log = (tmp_path / f"driver{n}.log").open("w")
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT), cwd, tmp

    proc, cwd, tmp = start(0)
    round1 = out / "pool" / "round-01" / ".staging" / "run.json"
    deadline = time.time() + 600
    while not round1.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert round1.exists(), (tmp_path / "driver0.log").read_text()[-3000:]
    time.sleep(3)  # the engine is starting or generating round 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = stage_stamps(out)
    assert len(finished) == 3  # round 0: generate, reweight, select
    round0 = _tree_digest(out / "pool" / "round-00")
    assert not any(p.is_file() for p in cwd.rglob("*"))  # the driver wrote nothing into its working dir
    shutil.rmtree(cwd)
    shutil.rmtree(tmp)  # node-local temp: gone, as on a new head node

    proc, cwd, tmp = start(1)
    assert proc.wait(timeout=900) == 0, (tmp_path / "driver1.log").read_text()[-3000:]
    log = (tmp_path / "driver1.log").read_text()
    assert not redone(finished), f"finished stages redone: {redone(finished)}"
    assert log.count("done already, skipping") == 3
    assert _tree_digest(out / "pool" / "round-00") == round0  # round 0's pool: not one byte regenerated
    report = json.loads((out / "report.json").read_text())
    assert [r["generate"]["kept"] for r in report["rounds"]] == [16, 12]
    assert not any(p.is_file() for p in cwd.rglob("*"))
