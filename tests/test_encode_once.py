"""Every pool text is encoded by MiniLM exactly once over a whole run (issue 22), even when the
driver is killed mid-run and resumed: a 3-round driver run with two Ray Train workers, real
SmolLM2 generation, real MiniLM, the counters persisted in the pools' feature stores. The resumed
driver also redoes none of the stages the killed one finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.test_pipeline_driver import REPO, SHORT_SST2, driver_command, redone, stage_stamps

THREE_ROUNDS = [
    f"task={SHORT_SST2}",
    "rounds=[{num_samples: 12}, {num_samples: 10}, {num_samples: 8}]",
    "generation.engine=transformers",
    "generation.batch_size=16",
    "channel.enabled=false",  # scored in the driver with transformers: not what this test is about
    "reweight.outer_iters=2",
    "workers=2",
    "final.epochs=2",
    "seeds=[0]",
    "gold=null",
]


@pytest.mark.slow
def test_three_rounds_two_workers_killed_and_resumed_encode_each_text_once(default_model, tmp_path):
    out = tmp_path / "run"
    cmd = driver_command([*THREE_ROUNDS, f"out={out}"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "round-01" / "reweight" / "stage.json"
    deadline = time.time() + 1200
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "round 1 reweight should have finished"
    proc.send_signal(signal.SIGKILL)  # dies mid-run: round 2 not done, the final stage not started
    proc.wait()
    assert not (out / "final" / "stage.json").exists()
    finished = stage_stamps(out)
    assert len(finished) >= 5  # round 0's three stages, round 1's generate and reweight (its select, maybe)

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not redone(finished), f"finished stages redone: {redone(finished)}"
    assert done.stdout.count("done already, skipping") >= len(finished)
    report = json.loads((out / "report.json").read_text())
    kept = [r["generate"]["kept"] for r in report["rounds"]]
    # the stores' counters are written by whichever process encoded: over both drivers, each pool
    # text once, and nothing else (no gold file here) went through the network
    assert report["features"] == {"stored_rows": sum(kept), "texts_encoded": sum(kept), "outside_store": 0}
    for r, n in enumerate(kept):
        manifest = json.loads((out / "pool" / f"round-{r:02d}" / "data" / ".features" / "manifest.json").read_text())
        assert manifest["rows"] == n and manifest["texts_encoded"] == n
        # round r encoded only its own new rows: the earlier rounds' were stored
        assert report["rounds"][r]["reweight"]["features"]["stored"] == n
        assert report["rounds"][r]["reweight"]["features"]["outside_store"] == 0
    assert report["final"]["features"]["stored"] == 0
    assert report["final"]["features"]["outside_store"] == 0
