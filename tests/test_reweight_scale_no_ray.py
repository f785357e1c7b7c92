"""The one-process benchmark path runs where Ray is not installed (a lent GPU machine has torch,
numpy, pyarrow and pyyaml, but no Ray and no vLLM): here ``import ray`` is made to fail."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_one_worker_benchmark_needs_no_ray(tmp_path):
    blocker = tmp_path / "site" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('ray is not installed on this machine')\n")
    gold = tmp_path / "gold.jsonl"
    rows = [{"text": f"{w} film {i}", "label": y} for i in range(20) for w, y in (("great", 1), ("dull", 0))]
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "PYTHONPATH": f"{blocker.parent}{os.pathsep}{ROOT}"}
    args = ["--samples", "400", "--workers", "1", "--iters", "1", "--gold", str(gold), "--device", "cpu"]
    args += ["--config", json.dumps({"tam": {"batch_size": 64, "buckets": 4096}}), "--tmp", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reweight_scale.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sparse N=       400 W=1 cpu" in proc.stdout
    assert "dense N=       400 W=1 cpu" in proc.stdout  # the old dense step, side by side
    assert "dense / sparse bow step" in proc.stdout
