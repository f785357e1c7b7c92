"""SunGen reweighting on Ray Train: W workers, each owning a shard of the samples and of theta.

This module adds no algorithm: every worker builds its shard with ``shard.make_shard`` (rows with
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
import uuid
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import torch

from sungen_ray.config import config_hash, from_dict, to_dict
from sungen_ray.data.atomic import read_json
from sungen_ray.errors import SungenError
from sungen_ray.reweight.config import ReweightConfig

CHECKPOINT_PREFIX = "iter-"
META = "meta.json"
# Testing only: make the last-ranked worker raise once, after computing this outer iteration and
# before checkpointing it (so that iteration is lost and must be recomputed after the restart).
FAIL_ENV = "SUNGEN_FAIL_AT_ITER"


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
) -> dict:
    """Reweight ``data_path`` with ``workers`` Ray Train workers; write ``out_dir``/weights.parquet
    and metrics.json as the single-process CLI does. Returns a summary (run name, iterations, timings).

    ``storage_path`` (default ``out_dir/checkpoints``) may be a local/NFS path or an S3/GCS URI that
    every node can reach. ``fail_at_iteration`` (or env SUNGEN_FAIL_AT_ITER) is for tests only.
    """
    from sungen_ray.reweight.outputs import write_outputs
    from sungen_ray.reweight.shard import load_data

    cfg.validate()
    if workers < 1:
        raise SungenError(f"workers: must be >= 1, got {workers}")
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise SungenError(f"--out {out}: exists and is not a directory")
    data_path = str(Path(data_path).resolve())
    # Validate the pool once here (clear errors before any worker starts), then drop it.
    data, num_labels = load_data(data_path, num_labels)
    n = len(data)
    del data
    if workers > n:
        raise SungenError(f"workers: {workers} workers for {n} samples; use at most {n} workers")
    digest = config_hash({"config": to_dict(cfg), "data": data_path, "n": n, "workers": workers})
    name = f"reweight-{digest}"
    summary = {"run_name": name, "workers": workers, "num_samples": n, "out": str(out)}

    if _finished_output(out, digest):
        return {**summary, "skipped": True, **_read_summary(out)}
    storage = storage_path or str(out / "checkpoints")
    fs, root = _storage_fs(storage)
    run_dir = f"{root.rstrip('/')}/{name}"
    latest = latest_checkpoint(fs, run_dir, workers)
    if latest is None or not latest[1]["finished"]:
        if fail_at_iteration is None and os.environ.get(FAIL_ENV):
            fail_at_iteration = int(os.environ[FAIL_ENV])
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
        )
        summary["fit_seconds"] = time.perf_counter() - clock
        latest = latest_checkpoint(fs, run_dir, workers)
        if latest is None:
            raise DistributedRunError(f"{run_dir}: the run finished but left no complete checkpoint")
    path, meta = latest
    idx, theta = read_weights(fs, path, workers)
    write_outputs(out, idx, theta, meta["history"], cfg, digest)
    return {**summary, "skipped": False, "checkpoint": path, **_read_summary(out)}


def _finished_output(out: Path, digest: str) -> bool:
    metrics = out / "metrics.json"
    if not (metrics.is_file() and (out / "weights.parquet").is_file()):
        return False
    try:
        return read_json(metrics).get("config_hash") == digest
    except (OSError, ValueError):
        return False


def _read_summary(out: Path) -> dict:
    m = read_json(out / "metrics.json")
    return {"iterations_run": m["iterations_run"], "stopped_early": m["stopped_early"]}


def _storage_fs(storage: str) -> tuple[pafs.FileSystem, str]:
    """Resolve the storage path and prove it is writable now, not after every worker has loaded its shard."""
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    try:
        fs, root = pafs.FileSystem.from_uri(storage)
        fs.create_dir(root, recursive=True)
        probe = f"{root.rstrip('/')}/.write-probe-{uuid.uuid4().hex}"
        with fs.open_output_stream(probe) as fh:
            fh.write(b"ok")
        fs.delete_file(probe)
    except (OSError, ValueError) as exc:  # pyarrow raises OSError subclasses (PermissionError, ...)
        raise SungenError(f"storage path {storage}: not writable ({exc})") from exc
    return fs, root


def latest_checkpoint(fs: pafs.FileSystem, run_dir: str, workers: int) -> tuple[str, dict] | None:
    """The newest checkpoint directory holding rank 0's meta and all ``workers`` shard files.

    Ray Train registers a checkpoint only once every worker has reported it, but a directory can
    be half-uploaded when a node dies, so completeness is checked file by file.
    """
    try:
        entries = fs.get_file_info(pafs.FileSelector(run_dir, allow_not_found=True))
    except OSError:
        return None
    dirs = sorted(
        (e.path for e in entries if e.type == pafs.FileType.Directory and e.base_name.startswith(CHECKPOINT_PREFIX)),
        reverse=True,
    )
    for path in dirs:
        names = {e.base_name for e in fs.get_file_info(pafs.FileSelector(path))}
        if META in names and all(_shard_file(r) in names for r in range(workers)):
            with fs.open_input_stream(f"{path}/{META}") as fh:
                return path, json.loads(fh.read().decode())
    return None


def read_weights(fs: pafs.FileSystem, path: str, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx, theta) of all shards of a checkpoint, sorted by idx (driver side, after the loop)."""
    idx, theta = [], []
    for rank in range(workers):
        saved = _load_torch(fs, f"{path}/{_shard_file(rank)}")
        idx.append(saved["idx"])
        theta.append(saved["state"]["theta"])
    idx, theta = torch.cat(idx), torch.cat(theta)
    order = torch.argsort(idx)
    return idx[order], theta[order]


def _shard_file(rank: int) -> str:
    return f"shard-{rank:05d}.pt"


def _load_torch(fs: pafs.FileSystem, path: str):
    import io

    with fs.open_input_stream(path) as fh:
        return torch.load(io.BytesIO(fh.read()), weights_only=True)


def _fit(*, data_path, cfg, workers, num_labels, use_gpu, max_failures, storage, name, threads, fail_at, fail_marker):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from sungen_ray.ray_runtime import ensure_ray

    ensure_ray(min_cpus=workers * threads + 1)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "data_path": data_path,
            "cfg": to_dict(cfg),
            "num_labels": num_labels,
            "threads": threads,
            "fail_at": fail_at,
            "fail_marker": fail_marker,
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": threads, **({"GPU": 1} if use_gpu else {})},
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


class _DeviceCollectives:
    """nccl reduces device tensors only; the core keeps its sums on the CPU, so stage them through the GPU."""

    def __init__(self, inner, device):
        self.inner, self.device = inner, device
        self.rank, self.world_size = inner.rank, inner.world_size

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device == self.device:
            return self.inner.all_reduce_sum(tensor)
        return tensor.copy_(self.inner.all_reduce_sum(tensor.to(self.device)).to(tensor.device))


def _worker_loop(config: dict) -> None:
    """One Ray Train worker: load and encode its shard, restore its state, run the shared loop."""
    import ray.train

    from sungen_ray.reweight.collectives import TorchDistCollectives
    from sungen_ray.reweight.loop import run
    from sungen_ray.reweight.shard import load_data, make_shard

    torch.set_num_threads(max(1, int(config["threads"])))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = from_dict(ReweightConfig, config["cfg"])
    coll = TorchDistCollectives()
    if torch.distributed.get_backend() == "nccl":
        from ray.train.torch import get_device

        coll = _DeviceCollectives(coll, get_device())

    clock = time.perf_counter()
    data, num_labels = load_data(config["data_path"], config["num_labels"])
    shard = make_shard(data, num_labels, cfg.tam, rank, world)
    del data
    load_seconds = time.perf_counter() - clock

    state, history = None, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        # read only this rank's file (and rank 0 the meta), not the whole checkpoint
        saved = _load_torch(checkpoint.filesystem, f"{checkpoint.path}/{_shard_file(rank)}")
        if not torch.equal(saved["idx"], shard.idx):
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
        _maybe_fail(config, it, rank, world)
        finished = bool(state["stopped"] or it >= cfg.outer_iters)
        with tempfile.TemporaryDirectory() as d:
            torch.save({"idx": shard.idx, "state": state}, Path(d) / _shard_file(rank))
            if rank == 0:
                meta = {"iteration": it, "finished": finished, "world_size": world, "history": history}
                (Path(d) / META).write_text(json.dumps(meta, default=_json_default))
                from sungen_ray.reweight.api import iteration_line

                print(iteration_line(metrics, cfg.outer_iters), flush=True)
            ray.train.report(
                {"iteration": it},
                checkpoint=ray.train.Checkpoint.from_directory(d),
                checkpoint_dir_name=f"{CHECKPOINT_PREFIX}{it:06d}",
            )

    run(shard, cfg, coll, state, on_iteration)


def _maybe_fail(config: dict, iteration: int, rank: int, world: int) -> None:
    """Testing only: raise once (a marker file remembers it) on the last rank at ``fail_at``."""
    if config.get("fail_at") != iteration or rank != world - 1:
        return
    fs, marker = pafs.FileSystem.from_uri(config["fail_marker"])
    if fs.get_file_info(marker).type != pafs.FileType.NotFound:
        return
    with fs.open_output_stream(marker) as fh:
        fh.write(b"1")
    raise RuntimeError(f"injected fault at outer iteration {iteration} on rank {rank} ({FAIL_ENV})")


def _json_default(o):
    if isinstance(o, np.generic | np.ndarray | torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
