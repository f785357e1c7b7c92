"""Engine replicas that live for a whole run: one Ray actor per replica, started once, fed by each
call's Ray Data prompt stream.

Why actors, and not the alternatives Ray offers:
- ``ray.data.llm``'s processor: its replicas are the actor pool of one Dataset's execution, started
  when that execution starts and killed when it ends (ray 2.60 has no way for a second Dataset to
  reuse them), so every round and the condition stage paid an engine start.
- One Ray Data pipeline fed by a queue for the whole run: its operators (and their CPU claims) would
  stay up through reweighting, and a round could not end its own stream without ending the engines.
- Ray Serve LLM deployments: a controller, HTTP proxies and an OpenAI layer around a batch job, and
  no per-row seeds or sampled-token log-probs through its API.
A plain actor per replica keeps what mattered: each round still streams through Ray Data (lazy
prompts, backpressure, rows back in prompt order, the stall watchdog, early stop), a light map stage
hands each batch to one replica, and the replicas outlive the stream. They restart on node loss
(``max_restarts``) and Ray re-sends the calls they held (``max_task_retries``); the row-id guard in
``pipeline.consume`` drops what comes back twice.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from sungen_ray.generation import top_p
from sungen_ray.generation.engines import (
    EngineOptions,
    TransformersGenerator,
    concurrent_batches,
    engine_id,
    mean_logprob,
    result_columns,
    sampling_params,
    summed_logprob,
    vllm_engine_kwargs,
)
from sungen_ray.parallel.quiet import is_verbose
from sungen_ray.parallel.ray_runtime import engine_log_env
from sungen_ray.tasks.spec import Decoding

CONTROL = "control"  # the replicas' concurrency group for end_stream / set_limit / shutdown
ABORTED = "aborted: the stream this batch belonged to had ended"
# A batch held past its stream's row limit goes ahead once the stream has left the engine idle this
# long: the driver raises the limit within a hand-off (~0.1 s) when it needs more rows, so this only
# keeps a lost or late set_limit from stalling the stream.
HOLD_IDLE_S = 5.0
ABORT_FOR_S = 10.0  # how long end_stream goes on aborting rows vLLM had not registered yet


WORKER_PROCESS_ENV = "SUNGEN_RAY_VLLM_WORKER_PROCESS"


def in_core_worker(thread_binding: str) -> bool:
    """Whether CPU replicas run vLLM's model worker inside its engine-core process (uniproc
    executor). vLLM's CPU default puts the worker in a third process beside an engine core that
    busy-waits on it, which took CPU from the math threads: 0.81 of the wall time without it
    (docs/RESULTS.md). Not when the replicas bind threads (their ``VLLM_CPU_OMP_THREADS_BIND``),
    which needs the worker's own process, nor where ``SUNGEN_RAY_VLLM_WORKER_PROCESS=1`` asks for
    vLLM's layout."""
    return thread_binding == "nobind" and os.environ.get(WORKER_PROCESS_ENV) != "1"


class VLLMReplica:
    """One vLLM ``AsyncLLM`` engine: concurrent ``generate`` calls share its continuous batch."""

    def __init__(self, opts: EngineOptions):
        import vllm

        args = vllm.AsyncEngineArgs(model=opts.model, **vllm_engine_kwargs(opts))
        self.engine = vllm.AsyncLLMEngine.from_engine_args(args)
        self.engine_id = engine_id()
        self.ended: set[str] = set()
        self.requests: dict[str, set[str]] = {}
        self.ids = itertools.count()
        # vLLM's client talks to its engine core over one ZeroMQ socket, which is not thread-safe:
        # every engine call runs on the loop of the first one (Ray gives the control group its own
        # thread and loop). An abort sent from the control thread while generate was submitting
        # killed the replica in libzmq (router.cpp: !_current_out).
        self.loop = None
        self.engine_threads: set[int] = set()
        self.limits: dict[str, tuple[int, int]] = {}  # stream -> (driver's call number, row limit)
        self.wakes: dict = {}  # stream -> asyncio.Event set when its limit moves or it ends
        self.last_done: dict[str, float] = {}  # stream -> when its last request here finished
        self.held: dict[str, int] = {}  # stream -> rows waiting in _admit now

    def _engine_loop(self):
        import asyncio
        import threading

        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        self.engine_threads.add(threading.get_ident())
        return self.loop

    async def generate(self, batch: dict, stream: str, decoding: Decoding, seed: int) -> dict[str, np.ndarray]:
        import asyncio

        if stream in self.ended:
            return result_columns(batch, ABORTED, self.engine_id)
        self._engine_loop()
        await self._admit(stream, int(np.min(batch["row_id"])), len(batch["row_id"]))
        rows = list(zip(map(int, batch["row_id"]), map(str, batch["prompt"])))
        outs = await asyncio.gather(*(self._one(stream, prompt, decoding, seed, row_id) for row_id, prompt in rows))
        if self.engine.errored:  # a dead engine core: exit, so Ray restarts the replica and re-sends the call
            os._exit(1)
        res = result_columns(batch, "", self.engine_id)
        for i, (text, tokens, lps, err, t_submit, t_done) in enumerate(outs):
            res["generated_text"][i], res["num_generated_tokens"][i] = text, len(tokens)
            res["logprob"][i], res["logprob_sum"][i] = mean_logprob(lps, tokens), summed_logprob(lps, tokens)
            res["token_ids"][i] = tokens
            res["error"][i], res["t_submit"][i], res["t_done"][i] = err, t_submit, t_done
        return res

    async def _one(self, stream: str, prompt: str, decoding: Decoding, seed: int, row_id: int):
        import vllm

        if stream in self.ended:  # ended while this batch's earlier rows were being submitted
            return "", [], None, ABORTED, time.time(), time.time()
        request_id = f"{stream}-{row_id}-{next(self.ids)}"
        self.requests.setdefault(stream, set()).add(request_id)
        t_submit = time.time()
        final = None
        try:
            # the finished row only: no per-token outputs for this process to wake up for
            params = vllm.SamplingParams(
                **sampling_params(decoding, seed, row_id), output_kind=vllm.sampling_params.RequestOutputKind.FINAL_ONLY
            )
            async for out in self.engine.generate(prompt, params, request_id):
                final = out
        except Exception as exc:  # noqa: BLE001 - the row is reported as failed, not lost
            return "", [], None, f"{type(exc).__name__}: {exc}"[:500], t_submit, time.time()
        finally:
            self.requests.get(stream, set()).discard(request_id)
            if stream not in self.ended:
                self.last_done[stream] = time.monotonic()
        if final is None or not final.outputs:
            return "", [], None, ABORTED, t_submit, time.time()
        o = final.outputs[0]
        err = ABORTED if o.finish_reason == "abort" else ""
        return o.text, list(o.token_ids), o.logprobs, err, t_submit, time.time()

    async def _admit(self, stream: str, first_row: int, rows: int) -> None:
        """Hold a batch whose rows all lie at or past its stream's row limit (``set_limit``): the
        driver expects to need none of them, and decoding them beside the rows it does need made
        the stream's last engine wave take twice as long (docs/RESULTS.md). Holding, not aborting,
        keeps every row that is decoded decoded as it would be without a limit: the driver raises
        the limit when it needs more, the batch then goes ahead, and the pool is the same."""
        import asyncio

        def past_limit() -> bool:
            return first_row >= self.limits.get(stream, (0, math.inf))[1] and stream not in self.ended

        if not past_limit():
            return
        held_at = time.monotonic()
        self.held[stream] = self.held.get(stream, 0) + rows
        try:
            while past_limit():
                # busy: look again in HOLD_IDLE_S; idle: go ahead once idle that long
                idle_from = max(held_at, self.last_done.get(stream, held_at))
                wait = HOLD_IDLE_S if self.requests.get(stream) else idle_from + HOLD_IDLE_S - time.monotonic()
                if wait <= 0:
                    return
                wake = self.wakes.setdefault(stream, asyncio.Event())
                try:
                    await asyncio.wait_for(wake.wait(), timeout=wait)
                except asyncio.TimeoutError:
                    pass
        finally:
            left = self.held.get(stream, 0) - rows
            if left > 0:
                self.held[stream] = left
            else:
                self.held.pop(stream, None)

    def _wake(self, stream: str) -> None:
        wake = self.wakes.pop(stream, None)
        if wake is not None:
            wake.set()

    async def set_limit(self, stream: str, call: int, row: int) -> None:
        """Hold ``stream``'s batches that start at row id ``row`` or later (``_admit``). ``call``
        numbers the driver's calls, which the control group may run out of order."""
        if call <= self.limits.get(stream, (-1, 0))[0]:
            return
        self.limits[stream] = (call, row)
        if self.loop is not None:

            async def wake() -> None:
                self._wake(stream)

            await self._on_engine_loop(wake())

    async def score(self, seqs: list[list[int]], starts: list[int]) -> list[float]:
        """Summed log-prob of each token sequence from position ``starts[i]`` on: one prefill per
        sequence (prompt log-probs), no decoding. The channel scores of ``plm/channel.py``."""
        import asyncio

        import vllm

        params = vllm.SamplingParams(
            max_tokens=1,
            prompt_logprobs=0,
            detokenize=False,
            output_kind=vllm.sampling_params.RequestOutputKind.FINAL_ONLY,
        )

        self._engine_loop()

        async def one(ids: list[int], start: int) -> float:
            final = None
            async for out in self.engine.generate({"prompt_token_ids": ids}, params, f"score-{next(self.ids)}"):
                final = out
            lps = final.prompt_logprobs
            return float(sum(lps[p][ids[p]].logprob for p in range(start, len(ids))))

        return list(await asyncio.gather(*(one(ids, start) for ids, start in zip(seqs, starts))))

    async def end_stream(self, stream: str) -> dict[str, int]:
        """Abort what ``stream`` still has in this engine, and answer its later calls at once.
        Called in the control group (its own thread), so the abort is handed to the engine's loop.
        Returns the rows it aborted mid-decode and the rows its row limit held back."""
        self.ended.add(stream)
        held = self.held.get(stream, 0)
        if self.loop is None:  # no request ever reached this engine
            return {"aborted": 0, "held": held}
        return {"aborted": await self._on_engine_loop(self._abort(stream)), "held": held}

    async def _on_engine_loop(self, coro):
        """Await ``coro`` on the engine's loop, from whichever loop this call runs on."""
        import asyncio

        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def _abort(self, stream: str) -> int:
        """Abort ``stream``'s requests and wait until none of them runs. vLLM registers a text
        request only once it is tokenized, off the loop, and ignores an abort that comes before:
        rows handed over just before the stream ended decoded to their end, into the next stream's
        first wave (7-9 s). So what still runs is aborted again until it has returned."""
        import asyncio

        self._engine_loop()
        self._wake(stream)  # held batches answer aborted
        self.limits.pop(stream, None)
        self.last_done.pop(stream, None)
        pending = self.requests.get(stream, set())  # live: each request leaves it as it returns
        aborted = len(pending)
        deadline = time.monotonic() + ABORT_FOR_S
        while pending and time.monotonic() < deadline:
            await self.engine.abort(list(pending))
            await asyncio.sleep(0.05)
        self.requests.pop(stream, None)
        return aborted

    def threads_used(self) -> int:
        """How many threads have called into the engine (must stay 1: see ``__init__``)."""
        return len(self.engine_threads)

    def math_dtype(self) -> str:
        return str(self.engine.vllm_config.model_config.dtype).removeprefix("torch.")

    async def shutdown(self) -> None:
        """Stop vLLM's engine-core process (which Ray does not track), on the engine's loop: from
        the control thread it left the loop's output handler reading a closed socket."""

        async def stop() -> None:
            self.engine.shutdown()

        if self.loop is None:  # no request ever reached this engine
            self.engine.shutdown()
        else:
            await self._on_engine_loop(stop())


class TransformersReplica:
    """One Hugging Face model (the fallback engine); ``end_stream`` runs beside a busy ``generate``."""

    def __init__(self, opts: EngineOptions):
        self.generator = TransformersGenerator(opts)
        self.ended: set[str] = set()

    def generate(self, batch: dict, stream: str, decoding: Decoding, seed: int) -> dict[str, np.ndarray]:
        if stream in self.ended:
            return result_columns(batch, ABORTED, self.generator.engine_id)
        return self.generator(batch, decoding=decoding, seed=seed)

    def end_stream(self, stream: str) -> dict[str, int]:
        self.ended.add(stream)
        return {"aborted": 0, "held": 0}

    def set_limit(self, stream: str, call: int, row: int) -> None:
        """Nothing is held here: a transformers replica takes one batch at a time, so the stream
        already has no more than that batch and the one queued behind it."""

    def math_dtype(self) -> str:
        return str(self.generator.model.dtype).removeprefix("torch.")

    def shutdown(self) -> None:
        pass


class ReplicaClient:
    """The light map stage: hands each batch to one replica (round robin by its position in the
    stream) and awaits the answer. Async, so one small actor holds many batches in flight; tasks
    blocked in ``ray.get`` would need a worker process per batch in flight."""

    def __init__(self, replicas: list, stream: str, decoding: Decoding, seed: int, batch_size: int):
        self.replicas, self.stream, self.decoding, self.seed = replicas, stream, decoding, seed
        self.batch_size = batch_size

    async def __call__(self, batch: dict) -> dict[str, np.ndarray]:
        k = (int(np.min(batch["row_id"])) // self.batch_size) % len(self.replicas)
        return await self.replicas[k].generate.remote(batch, self.stream, self.decoding, self.seed)


@dataclass
class EnginePool:
    """The replicas of a run (the driver's) or of one ``generate`` call. ``starts`` counts replica
    start-ups; restarts after node loss show up in the stream as engine ids not seen before."""

    engine: str | None = None
    opts: EngineOptions | None = None
    replicas: list = field(default_factory=list)
    starts: int = 0
    streams: itertools.count = field(default_factory=itertools.count)
    limit_calls: itertools.count = field(default_factory=itertools.count)
    ends: dict = field(default_factory=dict)  # stream -> rows aborted and held when it ended (end_stream)

    def serves(self, engine: str, opts: EngineOptions) -> bool:
        """Whether the running replicas can do ``opts``' work (decoding, seed, batch size are per call)."""
        per_call = {"decoding": None, "seed": 0, "batch_size": 0}
        return (
            bool(self.replicas)
            and engine == self.engine
            and dataclasses.replace(opts, **per_call) == dataclasses.replace(self.opts, **per_call)
        )

    def use(self, engine: str, opts: EngineOptions) -> EnginePool:
        """Replicas for ``opts``: the running ones if they fit, else new ones (the old ones stopped)."""
        if not self.serves(engine, opts):
            self.shutdown()
            self.engine, self.opts = engine, opts
            self._start()
        return self

    def _start(self) -> None:
        import ray

        opts = self.opts
        cls = VLLMReplica if self.engine == "vllm" else TransformersReplica
        env = {
            "VLLM_CPU_KVCACHE_SPACE": str(opts.kv_cache_gib),
            "OMP_NUM_THREADS": str(opts.cpus_per_replica),  # the engine's math threads = the CPUs reserved
            "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
            top_p.ENV: "1",  # nucleus masks without sorting the vocabulary, in vLLM's worker (top_p.py)
            **engine_log_env(),
        }
        if not opts.use_gpu and in_core_worker(env["VLLM_CPU_OMP_THREADS_BIND"]):
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        actor = ray.remote(concurrency_groups={CONTROL: 2})(cls).options(  # end_stream while a batch decodes
            num_cpus=0 if opts.use_gpu else opts.cpus_per_replica,
            num_gpus=1 if opts.use_gpu else 0,
            resources=opts.resources or None,
            max_restarts=-1,  # node loss: start again elsewhere ...
            max_task_retries=-1,  # ... and re-send the batches it held
            # vLLM: concurrent calls share one continuous batch; transformers: one batch at a time
            max_concurrency=1000 if self.engine == "vllm" else 1,
            runtime_env={"env_vars": env},
        )
        self.replicas = [actor.remote(opts) for _ in range(opts.replicas)]
        self.starts += opts.replicas
        where = "GPU" if opts.use_gpu else f"{opts.cpus_per_replica} CPU"
        print(f"[engines] starting {opts.replicas} {self.engine} replica(s) x {where}", flush=True)

    def stage(self, ds, decoding: Decoding, seed: int, batch_size: int, blocks: int):
        """``ds``'s prompt rows (``blocks`` blocks) through the replicas; returns (dataset, stream id
        for ``end_stream``)."""
        import ray

        stream = f"s{next(self.streams)}-{os.getpid()}-{time.time_ns()}"
        per_replica = concurrent_batches(dataclasses.replace(self.opts, batch_size=batch_size))
        if self.engine != "vllm":
            per_replica = 2  # one batch decoding, one queued behind it
        # about one engine batch per replica in flight (the stream's in_flight_bound), held by one
        # light client actor per replica
        per_replica = max(1, min(per_replica, math.ceil(blocks / len(self.replicas))))
        out = ds.map_batches(
            ReplicaClient,
            fn_constructor_kwargs={
                "replicas": self.replicas,
                "stream": stream,
                "decoding": decoding,
                "seed": seed,
                "batch_size": batch_size,
            },
            batch_size=batch_size,
            batch_format="numpy",
            # No CPU claim: the clients only await the replicas, and a claim held for the whole
            # stream left a cluster whose replicas took all CPUs but one (cluster_replicas) short
            # of the full CPU the prompt stream's range read asks for: nothing ever ran.
            num_cpus=0,
            compute=ray.data.ActorPoolStrategy(
                size=min(blocks, len(self.replicas)),
                max_tasks_in_flight_per_actor=per_replica,
                max_concurrent_calls_per_actor=per_replica,
            ),
        )
        return out, stream

    def score(self, seqs: list[list[int]], starts: list[int], chunk: int = 64, progress=None) -> np.ndarray:
        """``VLLMReplica.score`` over every replica, ``chunk`` sequences a call, at most two calls
        in flight per replica (so the engines stay full and the driver holds few results);
        ``progress(sequences done)`` after each call."""
        import ray

        out = np.zeros(len(seqs), dtype=np.float64)
        chunks = [range(i, min(i + chunk, len(seqs))) for i in range(0, len(seqs), chunk)]
        pending: dict = {}
        next_chunk = finished = 0
        while next_chunk < len(chunks) or pending:
            while next_chunk < len(chunks) and len(pending) < 2 * len(self.replicas):
                rows = chunks[next_chunk]
                replica = self.replicas[next_chunk % len(self.replicas)]
                pending[replica.score.remote([seqs[i] for i in rows], [starts[i] for i in rows])] = rows
                next_chunk += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            rows = pending.pop(done[0])
            out[rows.start : rows.stop] = ray.get(done[0])
            finished += len(rows)
            if progress is not None:
                progress(finished)
        return out

    def set_limit(self, stream: str, row: int) -> None:
        """Hold ``stream``'s batches from row id ``row`` on (``VLLMReplica._admit``) until a later
        call raises it. Not awaited: the driver goes on reading, and a replica lost with its node
        restarts without a limit."""
        call = next(self.limit_calls)
        for r in self.replicas:
            r.set_limit.options(concurrency_group=CONTROL).remote(stream, call, row)

    def end_stream(self, stream: str) -> None:
        """Abort what ``stream`` still has in the engines: the next stream starts on idle replicas.
        What each replica aborted mid-decode and held back is summed into ``ends[stream]``."""
        import ray

        calls = [r.end_stream.options(concurrency_group=CONTROL).remote(stream) for r in self.replicas]
        try:
            ends = ray.get(calls, timeout=60)
            self.ends[stream] = {k: sum(e[k] for e in ends) for k in ("aborted", "held")}
        except Exception as exc:  # noqa: BLE001 - a replica lost with its node has nothing left to abort
            print(f"[engines] could not end stream {stream} on every replica: {exc}", flush=True)

    def dtypes(self) -> list[str]:
        """The dtypes the replicas compute in (``auto`` is resolved on each replica's node)."""
        import ray

        try:
            calls = [r.math_dtype.options(concurrency_group=CONTROL).remote() for r in self.replicas]
            return sorted(set(ray.get(calls, timeout=60)))
        except Exception:  # noqa: BLE001 - a replica lost with its node: the manifest says unknown
            return []

    def shutdown(self) -> None:
        import ray

        if not self.replicas:
            return
        try:
            ray.get([r.shutdown.options(concurrency_group=CONTROL).remote() for r in self.replicas], timeout=60)
        except Exception:  # noqa: BLE001, S110 - killed below either way
            pass
        for r in self.replicas:
            ray.kill(r, no_restart=True)
        self.replicas = []
        if is_verbose():
            print(f"[engines] {self.engine} replicas shut down", flush=True)
