"""A deadline on an iterator that blocks without one (Ray Data's ``iter_batches``)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from sungen_ray.errors import SungenError


class GenerationStalled(SungenError):
    pass


def watch_for_stall(batches: Iterator, timeout_s: float) -> Iterator:
    """Yield ``batches`` (pulled by a helper thread) and raise if none arrives for ``timeout_s``.

    The Ray Data iterator blocks without a deadline, so it is drained by a thread and the caller
    waits on a queue with one. On a stall the engine actors are left to the Ray session (the CLI and
    the driver exit on the error; a long-lived process should call ``ray.shutdown()``)."""
    if timeout_s <= 0:
        yield from batches
        return
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
    try:
        while True:
            try:
                kind, item = q.get(timeout=timeout_s)
            except queue.Empty:
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
            yield item
    finally:
        stop.set()
