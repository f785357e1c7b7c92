"""Shared fixtures: one real local Ray cluster per test session, the embedded default PLM, gold data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster (4 logical CPUs so engine actors and light stages both fit on 2 cores)."""
    import ray

    os.environ.pop("RAY_ADDRESS", None)
    if not ray.is_initialized():
        # address="local": a private cluster even when another one (a `ray start` head) runs here
        ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def default_model() -> str:
    """The embedded SmolLM2 converted to safetensors (``make test`` prepares it first)."""
    from sungen_ray.plm.prepare import prepare_default_model

    return str(prepare_default_model())


def gold_path(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"gold data not present: {path}")
    return path
