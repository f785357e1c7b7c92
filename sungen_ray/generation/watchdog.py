"""A deadline on an iterator that blocks without one (Ray Data's ``iter_batches``)."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator

from sungen_ray.errors import SungenError


class GenerationStalled(SungenError):
    pass


def stream_dataset(
    ds,
    timeout_s: float,
    heartbeat_s: float | None = None,
    ordered: bool = True,
    after: Callable[[], None] | None = None,
) -> Iterator:
    """``ds``'s numpy batches under ``watch_for_stall``; its execution ends when the caller stops
    reading (early, on a stall or on an error), not when a blocked pull returns; then ``after`` runs
    (the engines abort what the stream still had in them).

    ``ordered``: batches come back in input order, so which rows a pass keeps (the first usable
    ones per label) and where a resumed pass goes on depend on the prompts alone, not on which
    replica or upstream task finished first. A late batch holds the ones behind it only in the driver's
    queue; the engines keep working (``benchmarks/stream_order.py`` measures the cost).

    No local prefetch: with one batch prefetched (Ray Data's default), block k is handed over only
    once block k+1 exists, so each engine wave's last batch reached the driver a wave late, and the
    driver decided when to stop on a view one wave old. A block is one engine batch of text, so
    fetching it when it is read costs little."""
    ds.context.execution_options.preserve_order = ordered  # this pipeline's own context copy
    batches = ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)

    def on_exit() -> None:
        end_execution(ds)
        if after is not None:
            after()

    return watch_for_stall(batches, timeout_s, heartbeat_s, on_exit=on_exit)


def end_execution(ds) -> None:
    """Shut ``ds``'s running execution down (its actors, tasks and its claim on the cluster).

    Ray Data ends an execution when its iterator is closed or its Dataset collected. Neither
    happens while the thread pulling from it is blocked waiting for a block that is minutes away
    (an engine batch, a starting engine): the execution then ran on beside the next round's,
    holding its CPUs and half the object store budget, and that round's first output came minutes
    late (README, "The demo pipeline"). No public call ends an execution (ray 2.60), and the
    Dataset only records its executor once the first block is out, so it is found as what it also
    is, the thread named after the dataset's id; if Ray renames it, nothing is shut down here."""
    name = f"StreamingExecutor-{ds.get_dataset_id()}"
    for thread in threading.enumerate():
        if thread.name == name and hasattr(thread, "shutdown"):
            thread.shutdown(force=True)


def watch_for_stall(
    batches: Iterator, timeout_s: float, heartbeat_s: float | None = None, on_exit: Callable[[], None] | None = None
) -> Iterator:
    """Yield ``batches`` (pulled by a helper thread) and raise if none arrives for ``timeout_s``.

    The Ray Data iterator blocks without a deadline, so it is drained by a thread and the caller
    waits on a queue with one. With ``heartbeat_s`` it also yields ``None`` whenever that long passes
    without a batch, so the caller can show progress during engine start-up. However the caller
    leaves (done, early, on a stall or an error) the pump may still be blocked inside ``batches``, so
    ``on_exit`` runs then, from the consumer's side: ``stream_dataset`` ends the Ray Data execution
    with it."""
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
                    f"generation stalled: no engine output for {timeout_s:g} s (stall_timeout_s). An engine replica "
                    "that crashes on every batch is restarted and its batch re-sent without end; its error is in "
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
        if on_exit is not None:
            on_exit()
