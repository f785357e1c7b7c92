"""Stages that declare their inputs: a stage's directory holds ``stage.json`` (the hash of its
inputs, its result, its seconds) once it finished, and a later run with the same hash skips it."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sungen_ray.config import config_hash
from sungen_ray.data import atomic

STAGE_FILE = "stage.json"


@dataclass
class Stage:
    name: str  # what --stop-after names, e.g. "generate-0"
    title: str  # what the log says, e.g. "round 0 generate"
    directory: Path
    inputs: dict  # everything that determines the output; its hash decides skip or redo
    fn: Callable[[Path], dict]

    @property
    def input_hash(self) -> str:
        return config_hash(self.inputs)

    def finished(self) -> dict | None:
        """The stage record if this stage already ran with these inputs."""
        marker = self.directory / STAGE_FILE
        if not marker.is_file():
            return None
        done = json.loads(marker.read_text())
        return done if done.get("hash") == self.input_hash else None

    def status(self) -> str:
        """What a run would do: "skip" (finished with these inputs), "redo" (inputs changed), "run"."""
        if self.finished() is not None:
            return "skip"
        return "redo" if (self.directory / STAGE_FILE).is_file() else "run"


def run_stage(s: Stage) -> dict:
    """Run ``s.fn(directory)`` unless a finished ``stage.json`` with the same input hash is there."""
    done = s.finished()
    if done is not None:
        print(f"[pipeline] {s.title}: done already, skipping ({s.directory})", flush=True)
        return done["result"]
    if (s.directory / STAGE_FILE).is_file():
        print(f"[pipeline] {s.title}: inputs changed since the last run, redoing it", flush=True)
    s.directory.mkdir(parents=True, exist_ok=True)
    print(f"[pipeline] {s.title}: starting", flush=True)
    t0 = time.perf_counter()
    result = s.fn(s.directory)
    seconds = time.perf_counter() - t0
    atomic.write_json(
        s.directory / STAGE_FILE,
        {"stage": s.title, "hash": s.input_hash, "seconds": round(seconds, 2), "result": result},
    )
    print(f"[pipeline] {s.title}: finished in {seconds:.1f} s", flush=True)
    return result


def read_stage(directory: Path) -> dict | None:
    """A stage's record, finished or not yet run (None), whatever its inputs were."""
    f = directory / STAGE_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def file_sha256(path: str | None) -> str | None:
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
