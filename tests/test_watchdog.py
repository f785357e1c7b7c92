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


def test_a_finished_block_reaches_the_reader_before_the_next_one_exists(ray_local):
    # Each engine batch is one block, and the driver stops the stream from what it has read. Ray
    # Data's local prefetch (prefetch_batches=1) handed block k over only once block k+1 existed, so
    # the last batch of each engine wave reached the driver a wave late and the stream's last wave
    # decoded rows nobody needed (RESULTS, the stream's last wave). Here block 1 is produced only
    # once the reader holds block 0: with that lag nothing arrives, and the stall deadline fires.
    import asyncio

    ray = ray_local

    @ray.remote(num_cpus=0)
    class Gate:
        def __init__(self):
            self.opened = asyncio.Event()

        async def wait(self) -> None:
            await self.opened.wait()

        async def open(self) -> None:
            self.opened.set()

    gate = Gate.remote()

    def after_the_reader_has_block_0(batch):
        if int(batch["id"][0]) > 0:
            ray.get(gate.wait.remote())
        return batch

    ds = ray.data.range(2, override_num_blocks=2).map_batches(after_the_reader_has_block_0, batch_size=1)
    got = []
    for batch in stream_dataset(ds, timeout_s=30):
        got.extend(int(i) for i in batch["id"])
        ray.get(gate.open.remote())
    assert got == [0, 1]
