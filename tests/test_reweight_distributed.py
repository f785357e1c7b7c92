"""Ray Train reweighting: same answer as one process, survives a dying worker, resumes, rejects bad input.

Four small multi-worker runs on the session's local Ray cluster (each ~20-40 s on 2 cores), the
first through ``sungen-ray reweight --workers 2`` and compared with ``--workers 1``. The
pool is built here from a word list, so CI never skips: two topics, some labels flipped.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sungen_ray.config import from_dict
from sungen_ray.data.atomic import read_json
from sungen_ray.errors import SungenError
from sungen_ray.reweight.api import reweight_pool
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.reweight.distributed import DistributedRunError, run_distributed

pytestmark = pytest.mark.slow

SPORT = "goal match team coach season league score striker referee stadium fans win cup final keeper".split()
TECH = "chip software cloud server code data network device battery screen app update robot laptop cpu".split()
FILLER = "the a and of in on with after before today new big old".split()
ITERS = 4


def make_pool(path, n: int = 240, flip: float = 0.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = []
    for y in labels:
        words = rng.choice([SPORT, TECH][y], size=rng.integers(4, 9)).tolist()
        words += rng.choice(FILLER, size=3).tolist()
        rng.shuffle(words)
        texts.append(" ".join(words))
    noisy = np.where(rng.random(n) < flip, 1 - labels, labels)
    idx = rng.permutation(10 * n)[:n].astype(np.int64)  # unique, unordered, not 0..n-1
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"idx": pa.array(idx), "text": texts, "label": pa.array(noisy, pa.int32())}), path / "pool.parquet"
    )
    return path


def config_dict() -> dict:
    return {
        # one global batch per inner step (batch_size > N): W data-parallel shards take exactly the
        # single-process step, so W=1 and W=2 agree up to float summation order
        "tam": {"name": "bow", "buckets": 4096, "dim": 16, "batch_size": 512},
        "inner_epochs": 3,
        "outer_iters": ITERS,
        "stop_patience": 0,
        "valid_size": 100,
    }


def config() -> ReweightConfig:
    return from_dict(ReweightConfig, config_dict())


def weights(out) -> pa.Table:
    return pq.read_table(out / "weights.parquet")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    return make_pool(tmp_path_factory.mktemp("pool"))


def cli_reweight(pool, out, workers: int) -> int:
    from sungen_ray.cli import main

    cfg = out.parent / f"{out.name}.yaml"
    cfg.write_text(yaml.safe_dump(config_dict()))
    return main(["reweight", "--data", str(pool), "--out", str(out), "--config", str(cfg), "--workers", str(workers)])


@pytest.fixture(scope="module")
def uninterrupted(ray_local, pool, tmp_path_factory):
    """``sungen-ray reweight --workers 2``: the Ray Train path, on the session's local cluster."""
    out = tmp_path_factory.mktemp("w2") / "out"
    assert cli_reweight(pool, out, 2) == 0
    return out


def test_two_workers_match_one_process(pool, uninterrupted, tmp_path):
    from sungen_ray.data.labelled import read_labelled

    single = tmp_path / "w1"
    assert cli_reweight(pool, single, 1) == 0  # one process, LocalCollectives, no Ray
    w1, w2 = weights(single).sort_by("idx"), weights(uninterrupted)
    assert read_json(uninterrupted / "metrics.json")["iterations_run"] == ITERS
    assert w2.column("idx").to_pylist() == sorted(read_labelled(pool).idx.tolist())  # every sample once, by idx
    assert w1.column("idx").equals(w2.column("idx"))
    local_theta = w1.column("theta").to_numpy()
    dist_theta = w2.column("theta").to_numpy()
    rho = spearman(local_theta, dist_theta)
    print(f"spearman(W=1 local, W=2 Ray Train) = {rho:.4f}")
    assert rho >= 0.99
    np.testing.assert_allclose(dist_theta, local_theta, atol=1e-3)
    assert np.allclose(w2.column("weight").to_numpy(), 1 / (1 + np.exp(-dist_theta)), atol=1e-6)


def test_empty_local_steps_match_one_process(ray_local, tmp_path):
    """Inner batch 1: every inner step has one row globally, so one of the two workers has an empty
    share of every step (it used to all-reduce gradients that were None and crash)."""
    pool = make_pool(tmp_path / "pool", n=120)
    cfg = from_dict(ReweightConfig, {**config_dict(), "tam": {**config_dict()["tam"], "batch_size": 1}})
    cfg.inner_epochs, cfg.outer_iters = 1, 2
    run_distributed(pool, tmp_path / "w2", cfg, workers=2, max_failures=0)
    reweight_pool(pool, tmp_path / "w1", cfg, workers=1)  # one process, no Ray
    w1, w2 = weights(tmp_path / "w1").sort_by("idx"), weights(tmp_path / "w2")
    assert w1.column("idx").equals(w2.column("idx"))
    np.testing.assert_allclose(w2.column("theta").to_numpy(), w1.column("theta").to_numpy(), atol=1e-4)


def test_small_batches_rank_like_one_process(ray_local, tmp_path):
    """3000 rows, inner batch 8 (about 4 rows per worker a step, some steps empty on one worker)."""
    pool = make_pool(tmp_path / "pool", n=3000)
    tam = {**config_dict()["tam"], "batch_size": 8}
    cfg = from_dict(ReweightConfig, {**config_dict(), "tam": tam, "inner_epochs": 1, "outer_iters": 2})
    run_distributed(pool, tmp_path / "w2", cfg, workers=2, max_failures=0)
    reweight_pool(pool, tmp_path / "w1", cfg, workers=1)  # one process, no Ray
    w1, w2 = weights(tmp_path / "w1").sort_by("idx"), weights(tmp_path / "w2")
    rho = spearman(w1.column("theta").to_numpy(), w2.column("theta").to_numpy())
    print(f"spearman(W=1, W=2) at batch 8 = {rho:.5f}")
    assert rho >= 0.999


def test_fault_injection_recovers_same_result(pool, uninterrupted, tmp_path):
    out = tmp_path / "faulty"
    summary = run_distributed(pool, out, config(), workers=2, max_failures=1, fail_at_iteration=2)
    assert summary["iterations_run"] == ITERS
    assert (out / "checkpoints" / summary["run_name"] / ".fault-injected").is_file()  # it really failed
    iterations = [m["iteration"] for m in read_json(out / "metrics.json")["iterations"]]
    assert iterations == list(range(1, ITERS + 1))  # every iteration exactly once
    np.testing.assert_array_equal(weights(out).column("theta"), weights(uninterrupted).column("theta"))


def test_rerun_resumes_then_skips(pool, uninterrupted, tmp_path):
    out = tmp_path / "resumed"
    with pytest.raises(DistributedRunError, match="re-run the same command"):
        run_distributed(pool, out, config(), workers=2, max_failures=0, fail_at_iteration=3)
    assert not (out / "weights.parquet").exists()
    summary = run_distributed(pool, out, config(), workers=2)  # same command: resumes from iteration 2
    assert summary["iterations_run"] == ITERS and not summary["skipped"]
    np.testing.assert_array_equal(weights(out).column("theta"), weights(uninterrupted).column("theta"))
    again = run_distributed(pool, out, config(), workers=2)
    assert again["skipped"]


def test_more_workers_than_samples(tmp_path, capsys):
    pool = make_pool(tmp_path / "tiny", n=6)
    with pytest.raises(SungenError, match="7 workers for 6 samples"):
        run_distributed(pool, tmp_path / "out", config(), workers=7)
    assert cli_reweight(pool, tmp_path / "cli", 7) == 2
    assert "error: workers: 7 workers for 6 samples" in capsys.readouterr().err


def test_unwritable_storage_path_is_named(pool, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(SungenError, match=f"storage path {blocker}/ckpt: not writable"):
        run_distributed(pool, tmp_path / "out", config(), workers=2, storage_path=str(blocker / "ckpt"))
