"""How CPU engine replicas are shaped when the user says nothing: the rules, read from the environment."""

from __future__ import annotations

import os

from sungen_ray.generation.engine_pool import WORKER_PROCESS_ENV, in_core_worker
from sungen_ray.parallel.ray_runtime import default_cpus_per_replica


def test_the_model_worker_runs_in_the_engine_core_unless_threads_are_bound_or_vllms_layout_is_asked(monkeypatch):
    monkeypatch.delenv(WORKER_PROCESS_ENV, raising=False)
    assert in_core_worker("nobind")
    assert not in_core_worker("0-1")  # binding needs the worker's own process
    monkeypatch.setenv(WORKER_PROCESS_ENV, "1")
    assert not in_core_worker("nobind")


def test_cores_are_shared_among_the_replicas_of_this_machine_only(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cores = os.cpu_count() or 1
    assert default_cpus_per_replica("vllm", None) == cores  # one replica with all of them
    assert default_cpus_per_replica("vllm", cores) == 1
    assert default_cpus_per_replica("transformers", None) == 1  # one batch at a time per replica
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # a joined cluster's nodes are not this machine
    assert default_cpus_per_replica("vllm", None) == 1
