"""The generation stream's deadline and its end: a real Ray Data execution, left early."""

from __future__ import annotations

import threading
import time

import pytest

from sungen_ray.generation.watchdog import GenerationStalled, stream_dataset


def _executions() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("StreamingExecutor-")}


def _slow_pipeline(ray):
    """A real Ray Data pipeline whose every block takes a minute."""

    def slow(batch):  # defined here so Ray pickles it by value (tests are not importable by workers)
        time.sleep(60)
        return batch

    return ray.data.range(32, override_num_blocks=4).map_batches(slow, batch_size=8)


def _wait_gone(before: set[str], seconds: float) -> set[str]:
    deadline = time.monotonic() + seconds
    while (running := _executions() - before) and time.monotonic() < deadline:
        time.sleep(0.25)
    return running


def test_leaving_a_blocked_stream_ends_its_execution(ray_local):
    # The driver stops reading when every label is full, or on a stall. The thread pulling from Ray
    # Data may then be blocked on a block that is minutes away; the execution must end anyway, or it
    # keeps its CPUs and its share of the object store and the next round's engines starve (the
    # demo's second round waited 300 s for its first output). Failed before: the execution ran on.
    ds = _slow_pipeline(ray_local)
    before = _executions()
    with pytest.raises(GenerationStalled, match=r"no engine output for 1 s"):
        for _ in stream_dataset(ds, timeout_s=1, heartbeat_s=0.25):
            pass
    running = _wait_gone(before, 10)
    assert not running, f"Ray Data executions {sorted(running)} still running 10 s after the stall"
