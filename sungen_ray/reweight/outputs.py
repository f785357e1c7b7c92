"""Reweighting outputs and the resumable single-process checkpoint, written atomically; and what
the single-process and the Ray Train paths share around them (out-dir check, run digest, log line)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import torch

from sungen_ray.config import config_hash, identity_dict, to_dict
from sungen_ray.data.atomic import read_json, write_json, write_parquet
from sungen_ray.errors import SungenError


def check_out_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise SungenError(f"--out {out}: exists and is not a directory")
    return out


def run_digest(cfg, data_path: str, n: int, workers: int | None = None) -> str:
    """What a run's outputs depend on; ``workers`` only for Ray Train runs (their shards differ),
    so single-process outputs written before keep their digest."""
    inputs = {"config": identity_dict(cfg), "data": data_path, "n": n}
    return config_hash(inputs if workers is None else inputs | {"workers": workers})


def iteration_line(metrics: dict, max_iters: int) -> str:
    """One progress line per outer iteration: where it is, whether the selection still moves, how long
    an iteration takes (the stopping rule ends the run once the change stays small)."""
    seconds = sum(metrics["seconds"].values())
    stop = ", stopping: selection stable" if metrics.get("stopped") else ""
    return (
        f"[reweight] iteration {metrics['iteration']}/{max_iters}: selection change {metrics['selection_change']:.2%}, "
        f"{seconds:.2f} s/iter, inner loss {metrics['inner_loss']:.4f}, outer loss {metrics['outer_loss']:.4f}{stop}"
    )


_last_line_at = [-float("inf")]


def log_iteration(metrics: dict, max_iters: int) -> None:
    """The first, last and stopping iterations always; between them one line per ``EVERY_S`` unless
    verbose (a short run's every iteration was most of a quiet terminal's lines)."""
    import time

    from sungen_ray.parallel.progress import EVERY_S
    from sungen_ray.parallel.quiet import is_verbose

    now = time.perf_counter()
    it = metrics["iteration"]
    edge = it in (0, 1, max_iters) or metrics.get("stopped")
    if is_verbose() or edge or now - _last_line_at[0] >= EVERY_S:
        _last_line_at[0] = now
        print(iteration_line(metrics, max_iters), flush=True)


def weights_table(idx: torch.Tensor, theta: torch.Tensor) -> pa.Table:
    return pa.table(
        {
            "idx": pa.array(idx.numpy(), pa.int64()),
            "theta": pa.array(theta.float().numpy(), pa.float32()),
            "weight": pa.array(torch.sigmoid(theta).float().numpy(), pa.float32()),
        }
    )


def write_outputs(out: Path, idx, theta, history: list[dict], cfg, digest: str) -> None:
    write_parquet(out / "weights.parquet", weights_table(idx, theta))
    write_json(
        out / "metrics.json",
        {
            "config": to_dict(cfg),
            "config_hash": digest,
            "num_samples": len(idx),
            "iterations_run": len(history),
            "stopped_early": bool(history and history[-1]["stopped"]),
            "iterations": history,
        },
    )


def finished_output(out: Path, digest: str) -> bool:
    """Whether ``out`` holds the finished outputs of this very run (same config, data and size), so a
    re-run keeps them without reading the texts or encoding anything."""
    metrics = out / "metrics.json"
    if not (metrics.is_file() and (out / "weights.parquet").is_file()):
        return False
    try:
        return read_json(metrics).get("config_hash") == digest
    except (OSError, ValueError):
        return False


def read_summary(out: Path) -> dict:
    m = read_json(out / "metrics.json")
    return {"iterations_run": m["iterations_run"], "stopped_early": m["stopped_early"]}


def save_state(out: Path, state: dict, history: list[dict], digest: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state.", dir=out)
    os.close(fd)
    torch.save({"state": state, "config_hash": digest}, tmp)
    os.replace(tmp, out / "state.pt")
    write_json(out / "metrics.partial.json", history)


def load_state(out: Path, digest: str) -> tuple[dict | None, list[dict]]:
    """The saved state when it was made by the same config and data, else a fresh start."""
    path = out / "state.pt"
    if not path.is_file():
        return None, []
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError...
        raise SungenError(
            f"{path}: unreadable reweighting state (truncated or not written by sungen-ray: {type(exc).__name__}); "
            "delete it to start the reweighting over"
        ) from exc
    if not isinstance(saved, dict) or saved.get("config_hash") != digest:
        return None, []
    partial = out / "metrics.partial.json"
    return saved["state"], (read_json(partial) if partial.is_file() else [])
