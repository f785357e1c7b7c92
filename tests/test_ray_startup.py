"""A local Ray that cannot start ends in a clear error, not Ray's generic startup traceback.

On a loaded machine Ray's raylet can die at startup: it waits a fixed time for its dashboard agent
(a Python process) to write its port file, then exits, and ``ray.init`` only says "The current node
timed out during startup" (ray-project/ray#65983). Seen here when ``reweight --workers 2`` started
beside two vLLM replicas generating a pool. The test makes the agent slow for real: a
``sitecustomize`` on the PYTHONPATH that Ray's processes inherit puts the agent to sleep before it
starts, so the real raylet times out waiting for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.test_reweight_distributed import make_pool

REPO = Path(__file__).resolve().parents[1]


def test_local_ray_that_cannot_start_is_a_clear_error(tmp_path):
    slow = tmp_path / "slow-agent"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import os, sys, time\n"
        "if any(a.replace('\\\\', '/').endswith('dashboard/agent.py') for a in sys.argv):\n"
        "    parent = os.getppid()\n"
        "    while os.getppid() == parent:  # until the raylet has given up on us and died\n"
        "        time.sleep(0.5)\n"
        "    os._exit(0)\n"
    )
    pool = make_pool(tmp_path / "pool", n=60)
    out = tmp_path / "out"
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=f"{slow}{os.pathsep}{REPO}", RAY_TMPDIR=str(ray_tmp))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sungen_ray.cli", "reweight", "--data", str(pool), "--out", str(out)]
            + ["--workers", "2", "--outer-iters", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    error = proc.stderr[proc.stderr.rindex("error: ") :]
    assert "Ray could not start" in error and "dashboard agent" in error, error
    assert str(ray_tmp) in error and "raylet.out" in error, error  # where the cause is logged
    assert "RAY_ADDRESS" in error, error  # the way around it: join a Ray started once by hand
    assert not (out / "weights.parquet").exists()


def test_private_cluster_runs_its_workers_at_the_drivers_priority():
    """Ray starts worker processes at nice 15 so its daemons stay responsive on a busy node. On the
    private cluster those workers are the engine replicas (and Ray Train workers), which then lost
    their cores to the driver and Ray's own processes (nice 0) whenever those woke (docs/RESULTS.md)."""
    code = (
        "import os, ray\n"
        "from sungen_ray.parallel.ray_runtime import ensure_ray\n"
        "ensure_ray(min_cpus=2)\n"
        "print('niceness', os.nice(0), ray.get(ray.remote(lambda: os.nice(0)).remote()))\n"
    )
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(REPO), RAY_TMPDIR=str(ray_tmp))
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("niceness "))
    driver, worker = map(int, line.split()[1:])
    assert worker == driver, f"workers run at nice {worker}, the driver at {driver}"
