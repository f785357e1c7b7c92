"""The driver SIGKILLed at five seeded random moments of a two-round run (during generation,
reweighting and the final stage) and resumed each time ends exactly as an uninterrupted run does:
same pool rows, same weights, same selection, same curated set, no row lost or duplicated, and no
stage a killed run finished done again (issue 22).
Real Ray, the real SmolLM2 (transformers engine: it seeds every row, as vLLM does), real MiniLM.

The drivers join the session's local Ray cluster (``RAY_ADDRESS``), as jobs on a running cluster do:
the cluster outlives each kill and only the driver, with the actors it owns, dies. The driver that
starts and dies with its own private cluster is killed in tests/test_encode_once.py."""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.test_pipeline_driver import REPO, SHORT_SST2, driver_command, redone, stage_stamps

RUN = [
    f"task={SHORT_SST2}",
    "rounds=[{num_samples: 16}, {num_samples: 12}]",
    "generation.engine=transformers",
    "generation.replicas=2",  # rows come back in prompt order whichever replica ran them
    "generation.flush_every_s=0.1",  # a kill during generation finds rows staged
    "generation.batch_size=2",  # many small batches: a kill lands between staged ones
    "channel.enabled=false",  # scored after generation, in the driver: test_channel's, not this test's
    "reweight.outer_iters=3",
    "final.epochs=2",
    "seeds=[0]",
    "gold=null",
]
# the driver's stage lines, in run order
PHASES = ["round 0 generate", "round 0 reweight", "round 1 generate", "round 1 reweight", "final training"]
# seconds after a phase starts (generation: after its first output, once the engines are up, so the
# kill lands among its rows, ~2 s); the others take a second or less on this pool, and at most 0.8 of
# what the uninterrupted run spent in them (a faster machine ran the final stage in under 0.5 s, and
# the kill meant for it came after the run had finished)
DELAYS = {"generate": (0.0, 1.0), "reweight": (0.0, 0.3), "final": (0.0, 0.5)}
STAGE_SHARE = 0.8


def _stage_seconds(output: str) -> dict[str, float]:
    """Each phase's duration in a driver's output (``[pipeline] round 0 reweight: finished in 3.3 s``)."""
    found = {}
    for name in PHASES:
        hit = re.search(rf"\[pipeline\] {re.escape(name)}[^:]*: finished in ([0-9.]+) s", output)
        if hit:
            found[name] = float(hit.group(1))
    return found


def _command(out: Path) -> list[str]:
    return driver_command([*RUN, f"out={out}"])


def _phase(line: str) -> tuple[int, str] | None:
    for k, name in enumerate(PHASES):
        if f"[pipeline] {name}" in line:
            return k, ("starting" if line.rstrip().endswith("starting") else "other")
    return None


def _run_and_kill(
    out: Path, first_phase: int, rng: random.Random, seen: list[str], env: dict, spans: dict[str, float]
) -> str | None:
    """Run the driver; once a phase at or after ``first_phase`` starts, SIGKILL it a random moment
    later. Returns the phase in progress at the kill (None: the run finished first); the driver's
    lines are added to ``seen``. The stages earlier runs finished are not redone."""
    finished = stage_stamps(out)
    running = _run_until_killed(out, first_phase, rng, seen, env, spans)
    assert not redone(finished), f"finished stages redone: {redone(finished)}"
    return running


def _run_until_killed(
    out: Path, first_phase: int, rng: random.Random, seen: list[str], env: dict, spans: dict[str, float]
) -> str | None:
    proc = subprocess.Popen(
        _command(out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    running, kill_at, deadline = None, None, time.time() + 900
    while proc.poll() is None and time.time() < deadline:
        if kill_at is not None and time.time() >= kill_at:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return running
        try:
            line = lines.get(timeout=0.02)
        except queue.Empty:
            continue
        seen.append(line)
        if running and running.endswith("generate") and "first output after" in line and kill_at is None:
            if PHASES.index(running) >= first_phase:
                kill_at = time.time() + rng.uniform(*DELAYS["generate"])
            continue
        found = _phase(line)
        if found is None:
            continue
        k, what = found
        running = PHASES[k] if what == "starting" else None
        if what == "starting" and k >= first_phase and kill_at is None and not PHASES[k].endswith("generate"):
            lo, hi = DELAYS[PHASES[k].split()[-1] if k < 4 else "final"]
            kill_at = time.time() + rng.uniform(lo, min(hi, STAGE_SHARE * spans[PHASES[k]]))
    proc.wait(timeout=60)
    assert proc.returncode == 0, f"the driver failed (exit {proc.returncode})"
    return None


def _pool(out: Path):
    table = pq.read_table(out / "pool" / "round-01" / "data").to_pandas()
    earlier = pq.read_table(out / "pool" / "round-00" / "data").to_pandas()
    import pandas as pd

    both = pd.concat([earlier, table]).sort_values("idx").reset_index(drop=True)
    return both[["idx", "text", "label", "round"]]


@pytest.mark.slow
def test_five_random_kills_end_as_an_uninterrupted_run(ray_local, default_model, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    done = subprocess.run(_command(ref), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    spans = _stage_seconds(done.stdout)
    assert set(spans) == set(PHASES), f"stage times missing from the driver's output: {spans}"

    rng = random.Random(22)
    seen: list[str] = []
    killed_in = [_run_and_kill(out, k, rng, seen, env, spans) for k in range(len(PHASES))]
    assert _run_and_kill(out, len(PHASES), rng, seen, env, spans) is None  # the last resume runs to the end
    print(f"killed during: {killed_in}; uninterrupted stage seconds: {spans}")
    kinds = {p.split()[-1] for p in killed_in if p}
    assert {"generate", "reweight", "training"} <= kinds, f"kills landed in {killed_in}"
    resumed = [line for line in seen if "[generate] resuming:" in line and "resuming: 0 samples" not in line]
    print("".join(resumed))
    assert resumed, "no kill during generation found staged rows: the resumed pass was not exercised"

    got, want = _pool(out), _pool(ref)
    assert got["idx"].is_unique and len(got) == len(want) == 28  # no row lost or duplicated
    differ = got.index[(got != want).any(axis=1)].tolist()
    assert not differ, f"rows differ from the uninterrupted run's:\n{got.loc[differ]}\n{want.loc[differ]}"
    for rel in ("round-00/reweight/weights.parquet", "round-01/reweight/weights.parquet"):
        a, b = pq.read_table(out / rel), pq.read_table(ref / rel)
        assert a.column("idx").equals(b.column("idx")) and np.array_equal(
            a.column("theta").to_numpy(), b.column("theta").to_numpy()
        ), rel
    for rel in ("round-01/select/selected.parquet", "final/dataset/data/train-00000-of-00001.parquet"):
        a, b = pq.read_table(out / rel), pq.read_table(ref / rel)
        assert a.select(["idx", "weight"]).equals(b.select(["idx", "weight"])), rel
