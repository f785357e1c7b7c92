"""SunGen reweighting on Ray Train: W workers, each owning a shard of the samples and of theta.

This module (the Train driver and the worker loop; checkpoint files are ``checkpoints.py``) adds no
algorithm: every worker builds its shard with ``shard.load_shard`` (rows with
``idx % W == rank``, the same split the single-process code would make) and calls the same
``loop.run`` with torch.distributed collectives. What it adds is what a cluster needs:

- a checkpoint after every outer iteration (each worker its theta shard + Adam state, rank 0 the
  iteration and the metrics so far), persisted by Ray Train under ``storage_path/<run name>``;
- ``FailureConfig(max_failures)``: a dead worker restarts the group from the latest checkpoint;
- a re-run of the same command resumes (Ray Train V2 reloads the run's checkpoint list when the
  storage path and run name match; the name is a hash of config, data and W), and a finished run
  is detected from ``metrics.json`` and skipped;
- the driver writes ``weights.parquet`` / ``metrics.json`` from the final checkpoint, so the weight
  vector is never gathered into one worker during the loop.

Results travel in checkpoint files, not ``Result.metrics`` (Train V2 returns None there).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sungen_ray.config import from_dict, to_dict
from sungen_ray.errors import SungenError
from sungen_ray.reweight.checkpoints import (
    CHECKPOINT_PREFIX,
    META,
    latest_checkpoint,
    load_torch,
    read_weights,
    refuse_incomplete_newest,
    shard_file,
    storage_fs,
)
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.reweight.faults import FAIL_ENV, maybe_fail
from sungen_ray.reweight.outputs import (
    check_out_dir,
    finished_output,
    log_iteration,
    read_summary,
    run_digest,
    write_outputs,
)


class DistributedRunError(RuntimeError):
    """The Ray Train run failed after its retries; re-running the same command resumes it."""


def run_distributed(
    data_path: str | Path,
    out_dir: str | Path,
    cfg: ReweightConfig,
    workers: int,
    use_gpu: bool = False,
    max_failures: int = 2,
    storage_path: str | None = None,
    num_labels: int | None = None,
    threads_per_worker: int = 1,
    fail_at_iteration: int | None = None,
    worker_resources: dict[str, float] | None = None,
    placement_strategy: str = "PACK",
) -> dict:
    """Reweight ``data_path`` with ``workers`` Ray Train workers; write ``out_dir``/weights.parquet
    and metrics.json as the single-process CLI does. Returns a summary (run name, iterations, timings).

    ``storage_path`` (default ``out_dir/checkpoints``) may be a local/NFS path or an S3/GCS URI that
    every node can reach. ``worker_resources`` (custom Ray resources each worker asks for) and
    ``placement_strategy`` (Ray Train's PACK or SPREAD) decide which nodes the workers land on.
    ``fail_at_iteration`` (or env SUNGEN_FAIL_AT_ITER) is for tests only.
    """
    from sungen_ray.reweight.shard import pool_ids_and_labels

    cfg.validate()
    if workers < 1:
        raise SungenError(f"workers: must be >= 1, got {workers}")
    if placement_strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
        raise SungenError(
            f"placement_strategy: must be PACK, SPREAD, STRICT_PACK or STRICT_SPREAD, got {placement_strategy!r}"
        )
    out = check_out_dir(Path(out_dir).resolve())
    data_path = str(Path(data_path).resolve())
    # Validate the pool once here (clear errors before any worker starts), without reading its texts.
    idx, _, num_labels = pool_ids_and_labels(data_path, num_labels)
    n = len(idx)
    del idx
    if workers > n:
        raise SungenError(f"workers: {workers} workers for {n} samples; use at most {n} workers")
    digest = run_digest(cfg, data_path, n, workers)
    name = f"reweight-{digest}"
    summary = {"run_name": name, "workers": workers, "num_samples": n, "out": str(out)}

    if finished_output(out, digest):
        return {**summary, "skipped": True, **read_summary(out)}
    storage = storage_path or str(out / "checkpoints")
    fs, root = storage_fs(storage)
    run_dir = f"{root.rstrip('/')}/{name}"
    refuse_incomplete_newest(fs, run_dir, workers)
    latest = latest_checkpoint(fs, run_dir, workers)
    if latest is None or not latest[1]["finished"]:
        if fail_at_iteration is None and os.environ.get(FAIL_ENV):
            fail_at_iteration = int(os.environ[FAIL_ENV])
        from sungen_ray.features.pool import ensure_tam_features

        ensure_tam_features(data_path, cfg.tam.name)  # workers read their rows' features; they never encode
        clock = time.perf_counter()
        _fit(
            data_path=data_path,
            cfg=cfg,
            workers=workers,
            num_labels=num_labels,
            use_gpu=use_gpu,
            max_failures=max_failures,
            storage=storage,
            name=name,
            threads=threads_per_worker,
            fail_at=fail_at_iteration,
            fail_marker=f"{run_dir}/.fault-injected" if fail_at_iteration is not None else None,
            resources=dict(worker_resources or {}),
            strategy=placement_strategy,
        )
        summary["fit_seconds"] = time.perf_counter() - clock
        latest = latest_checkpoint(fs, run_dir, workers)
        if latest is None:
            raise DistributedRunError(f"{run_dir}: the run finished but left no complete checkpoint")
    path, meta = latest
    idx, theta = read_weights(fs, path, workers)
    write_outputs(out, idx, theta, meta["history"], cfg, digest)
    return {**summary, "skipped": False, "checkpoint": path, **read_summary(out)}


def _fit(
    *,
    data_path,
    cfg,
    workers,
    num_labels,
    use_gpu,
    max_failures,
    storage,
    name,
    threads,
    fail_at,
    fail_marker,
    resources,
    strategy,
):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from sungen_ray.parallel.ray_runtime import ensure_ray

    ensure_ray(min_cpus=workers * threads + 1)
    if not use_gpu:  # the shipped GPU clusters autoscale GPU workers from 0: nothing to check against yet
        _check_fits(workers, {"CPU": threads, **resources})
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "data_path": data_path,
            "cfg": to_dict(cfg),
            "num_labels": num_labels,
            "threads": threads,
            "use_gpu": use_gpu,
            "fail_at": fail_at,
            "fail_marker": fail_marker,
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": threads, **({"GPU": 1} if use_gpu else {}), **resources},
            placement_strategy=strategy,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:  # Train V2 raises TrainingFailedError / WorkerGroupError wrapping the worker's
        user = _user_error(exc)
        if user is not None:
            raise SungenError(str(user)) from exc
        raise DistributedRunError(
            f"Ray Train run {name} failed after {max_failures} restart(s): {exc}\n"
            f"re-run the same command to resume from the latest checkpoint under {storage}/{name}"
        ) from exc


def _check_fits(workers: int, per_worker: dict[str, float]) -> None:
    """Ray Train waits for resources forever; more workers than the cluster holds must fail now."""
    import ray

    total = ray.cluster_resources()
    for name, amount in per_worker.items():
        if workers * amount > total.get(name, 0):
            raise SungenError(
                f"workers: {workers} workers need {workers * amount:g} {name} but the Ray cluster has "
                f"{total.get(name, 0):g}; lower --workers (or add nodes)"
            )


def _user_error(exc: BaseException) -> BaseException | None:
    """A SungenError raised inside a worker (e.g. diverged inner training), found in Train's wrapper."""
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SungenError):
            return e
        stack.extend([e.__cause__, e.__context__, *getattr(e, "worker_failures", {}).values()])
    return None


def _worker_loop(config: dict) -> None:
    """One Ray Train worker: load and encode its shard, restore its state, run the shared loop."""
    import ray.train

    from sungen_ray.parallel.collectives import TorchDistCollectives
    from sungen_ray.reweight.loop import run, state_to
    from sungen_ray.reweight.shard import load_shard

    torch.set_num_threads(max(1, int(config["threads"])))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = from_dict(ReweightConfig, config["cfg"])
    coll = TorchDistCollectives()
    device = torch.device("cpu")
    if config.get("use_gpu"):
        from ray.train.torch import get_device

        device = get_device()  # the GPU Ray assigned this worker: model, data and nccl buffers live there

    clock = time.perf_counter()
    shard = load_shard(config["data_path"], config["num_labels"], cfg.tam, rank, world).to(device)
    load_seconds = time.perf_counter() - clock

    state, history = None, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        # read only this rank's file (and rank 0 the meta), not the whole checkpoint
        saved = load_torch(checkpoint.filesystem, f"{checkpoint.path}/{shard_file(rank)}")
        if not torch.equal(saved["idx"], shard.idx.cpu()):
            raise SungenError(f"checkpoint {checkpoint.path}: shard {rank} holds other samples than the pool")
        state = saved["state"]
        if rank == 0:
            with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{META}") as fh:
                history = json.loads(fh.read().decode())["history"]
        if rank == 0:
            print(f"[reweight] resuming from iteration {state['iteration']} ({checkpoint.path})", flush=True)

    def on_iteration(state: dict, metrics: dict) -> None:
        it = state["iteration"]
        metrics = {**metrics, "workers": world, "shard_load_seconds": load_seconds}
        history.append(metrics)
        maybe_fail(config, it, rank, world)
        finished = bool(state["stopped"] or it >= cfg.outer_iters)
        with tempfile.TemporaryDirectory() as d:
            # node_id: where this rank ran (provenance; a node-loss test kills that node)
            node = ray.get_runtime_context().get_node_id()
            torch.save(
                {"idx": shard.idx.cpu(), "state": state_to(state, "cpu"), "node_id": node}, Path(d) / shard_file(rank)
            )
            if rank == 0:
                meta = {"iteration": it, "finished": finished, "world_size": world, "history": history}
                (Path(d) / META).write_text(json.dumps(meta, default=_json_default))
                log_iteration(metrics, cfg.outer_iters)
            ray.train.report(
                {"iteration": it},
                checkpoint=ray.train.Checkpoint.from_directory(d),
                checkpoint_dir_name=f"{CHECKPOINT_PREFIX}{it:06d}",
            )

    run(shard, cfg, coll, state, on_iteration)


def _json_default(o):
    if isinstance(o, np.generic | np.ndarray | torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
