"""Checkpoint files of a distributed reweighting run: each worker's theta shard + Adam state,
rank 0's meta (iteration, finished, history), on any pyarrow filesystem (local, NFS, S3, GCS)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import torch

from sungen_ray.errors import SungenError

CHECKPOINT_PREFIX = "iter-"
META = "meta.json"


def storage_fs(storage: str) -> tuple[pafs.FileSystem, str]:
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
        if META in names and all(shard_file(r) in names for r in range(workers)):
            with fs.open_input_stream(f"{path}/{META}") as fh:
                return path, json.loads(fh.read().decode())
    return None


def refuse_incomplete_newest(fs: pafs.FileSystem, run_dir: str, workers: int) -> None:
    """Ray Train resumes from the newest checkpoint it registered; if files of it are gone, every
    worker would fail loading them and the run would retry to exhaustion. Say so before starting."""
    try:
        entries = fs.get_file_info(pafs.FileSelector(run_dir, allow_not_found=True))
    except OSError:
        return
    dirs = sorted(
        e.path for e in entries if e.type == pafs.FileType.Directory and e.base_name.startswith(CHECKPOINT_PREFIX)
    )
    if not dirs:
        return
    names = {e.base_name for e in fs.get_file_info(pafs.FileSelector(dirs[-1]))}
    missing = [f for f in (META, *(shard_file(r) for r in range(workers))) if f not in names]
    if missing:
        raise SungenError(
            f"checkpoint {dirs[-1]}: incomplete, missing {missing}; delete that directory to resume from the "
            "checkpoint before it"
        )


def read_weights(fs: pafs.FileSystem, path: str, workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx, theta) of all shards of a checkpoint, sorted by idx (driver side, after the loop)."""
    idx, theta = [], []
    for rank in range(workers):
        saved = load_torch(fs, f"{path}/{shard_file(rank)}")
        idx.append(saved["idx"])
        theta.append(saved["state"]["theta"])
    idx, theta = torch.cat(idx), torch.cat(theta)
    order = torch.argsort(idx)
    return idx[order], theta[order]


def shard_file(rank: int) -> str:
    return f"shard-{rank:05d}.pt"


def load_torch(fs: pafs.FileSystem, path: str):
    with fs.open_input_stream(path) as fh:
        return torch.load(io.BytesIO(fh.read()), weights_only=True)
