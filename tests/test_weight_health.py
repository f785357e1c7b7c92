"""Issue 21: weight health (saturation flagged), the channel prior, the paper preset, the LR head."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from reweight_data import flip, sentiment_texts

from sungen_ray.config import from_dict
from sungen_ray.errors import SungenError
from sungen_ray.reweight.api import reweight_pool
from sungen_ray.reweight.config import PRESETS, ReweightConfig
from sungen_ray.reweight.loop import Shard, initial_theta, run
from sungen_ray.reweight.shard import load_shard
from sungen_ray.tam import build_encoder
from sungen_ray.tam.config import TamConfig

BOW = {"name": "bow", "buckets": 1 << 12, "batch_size": 32}


def _pool(path, n=400, share=0.3, margin=True, files=1):
    """A real Parquet pool of noisy sentiment texts; its channel_margin is a noisy view of the truth."""
    texts, clean = sentiment_texts(n)
    noisy, flipped = flip(clean, share)
    rng = np.random.default_rng(3)
    channel = np.where(flipped, -1.0, 1.0) + rng.normal(0, 1.0, n)
    path.mkdir(parents=True, exist_ok=True)
    for k, rows in enumerate(np.array_split(np.arange(n), files)):
        cols = {
            "idx": pa.array(rows, pa.int64()),
            "text": pa.array([texts[i] for i in rows]),
            "label": pa.array(noisy[rows], pa.int32()),
        }
        if margin is True or (margin == "first" and k == 0):
            cols["channel_margin"] = pa.array(channel[rows].astype(np.float32))
        pq.write_table(pa.table(cols), path / f"part-{k}.parquet")
    return flipped, channel


def test_saturating_run_is_flagged_and_the_defaults_are_not(tmp_path, capsys):
    _pool(tmp_path / "pool")
    saturating = from_dict(
        ReweightConfig, {"preset": "paper", "tam": BOW, "outer_iters": 25, "outer_lr": 1.0, "tau": 0.9}
    )
    reweight_pool(tmp_path / "pool", tmp_path / "paper", saturating)
    health = json.loads((tmp_path / "paper" / "metrics.json").read_text())["health"]
    assert health["saturated_share"] > 0.5 and not health["stopped_early"]
    assert any("saturated" in f and "did not fire" in f for f in health["flags"])
    assert "weight health" in capsys.readouterr().out
    assert health["rho_channel"] is not None and not health["used_prior"]

    default = from_dict(ReweightConfig, {"tam": BOW, "outer_iters": 25})
    reweight_pool(tmp_path / "pool", tmp_path / "default", default)
    health = json.loads((tmp_path / "default" / "metrics.json").read_text())["health"]
    assert health["saturated_share"] < 0.5 and health["flags"] == []
    assert health["used_prior"] and health["rho_channel"] > 0.3


def test_theta_starts_at_the_z_scored_channel_margin(tmp_path):
    flipped, channel = _pool(tmp_path / "pool", files=2)
    cfg = from_dict(ReweightConfig, {"tam": BOW, "prior_scale": 2.0})
    shard = load_shard(tmp_path / "pool", None, cfg.tam)
    assert torch.allclose(shard.prior, torch.from_numpy(channel.astype(np.float32)))
    from sungen_ray.parallel.collectives import LocalCollectives

    theta = initial_theta(shard, cfg, LocalCollectives()).numpy()
    expected = 2.0 * (channel - channel.mean()) / channel.std()
    assert np.allclose(theta, expected, atol=1e-4)
    assert theta[flipped].mean() < theta[~flipped].mean()
    zero = from_dict(ReweightConfig, {"tam": BOW, "theta_init": "zero"})
    assert not initial_theta(shard, zero, LocalCollectives()).any()


def test_prior_z_scored_within_each_label_starts_every_label_level(tmp_path):
    _pool(tmp_path / "pool")
    cfg = from_dict(ReweightConfig, {"tam": BOW, "prior_norm": "label"})
    shard = load_shard(tmp_path / "pool", None, cfg.tam)
    shard.prior[shard.labels == 1] -= 2.0  # one label's margins lower as a block (a harder prompt)
    from sungen_ray.parallel.collectives import LocalCollectives

    by_pool = initial_theta(shard, from_dict(ReweightConfig, {"tam": BOW}), LocalCollectives()).numpy()
    theta = initial_theta(shard, cfg, LocalCollectives()).numpy()
    labels, margin = shard.labels.numpy(), shard.prior.double().numpy()
    assert by_pool[labels == 1].mean() < by_pool[labels == 0].mean() - 1.0
    for k in (0, 1):
        m = margin[labels == k]
        assert np.allclose(theta[labels == k], 3.0 * (m - m.mean()) / m.std(), atol=1e-4)
    with pytest.raises(SungenError, match="prior_norm"):
        from_dict(ReweightConfig, {"tam": BOW, "prior_norm": "row"})


def test_a_half_scored_pool_uses_no_prior(tmp_path, capsys):
    _pool(tmp_path / "pool", files=2, margin="first")
    shard = load_shard(tmp_path / "pool", None, TamConfig(**BOW))
    assert shard.prior is None
    assert "lack channel_margin" in capsys.readouterr().out


def test_prior_pseudo_validation_rows_are_channel_consistent(monkeypatch):
    texts, labels = sentiment_texts(300)
    noisy, flipped = flip(labels, 0.3)
    prior = torch.from_numpy(np.where(flipped, -1.0, 1.0).astype(np.float32))
    cfg = from_dict(ReweightConfig, {"tam": BOW, "outer_iters": 1, "valid_size": 300})
    enc = build_encoder(cfg.tam)
    shard = Shard(torch.arange(300), torch.from_numpy(noisy), enc.encode(texts), 2, enc, prior)
    seen = {}
    import sungen_ray.reweight.loop as loop

    real = loop.outer_gradient

    def spy(model, data, labels, rows, *a, **k):
        seen["rows"] = rows.clone()
        return real(model, data, labels, rows, *a, **k)

    monkeypatch.setattr(loop, "outer_gradient", spy)
    run(shard, cfg)
    assert len(seen["rows"]) > 100 and not flipped[seen["rows"].numpy()].any()


def test_paper_preset_and_unknown_preset():
    cfg = from_dict(ReweightConfig, {"preset": "paper", "outer_iters": 7})
    assert cfg.outer_iters == 7 and cfg.outer_lr == PRESETS["paper"]["outer_lr"] == 0.25
    assert cfg.theta_init == "zero" and cfg.align_norm == "none" and cfg.inner_epochs == 1
    with pytest.raises(SungenError, match=r"reweight\.preset: unknown preset 'nope'"):
        from_dict(ReweightConfig, {"preset": "nope"}, "reweight")


def test_lbfgs_head_reaches_the_regularised_optimum():
    from sungen_ray.tam.encoded import Dense
    from sungen_ray.tam.minilm import HeadModel
    from sungen_ray.tam.train import fit_full_batch

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(300, 16)).astype(np.float32))
    y = (x[:, 0] + 0.5 * torch.from_numpy(rng.normal(size=300).astype(np.float32)) > 0).long()
    model = HeadModel(16, 2, hidden=0)
    fit_full_batch(model, Dense(x), y, None, l2=1e-2)
    loss = torch.nn.functional.cross_entropy(model(x), y) + 0.5e-2 * sum((p * p).sum() for p in model.parameters())
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert max(float(g.abs().max()) for g in grads) < 1e-4  # a stationary point of a convex objective
    with pytest.raises(SungenError, match="lbfgs"):
        from_dict(TamConfig, {"name": "minilm", "hidden": 256, "optimizer": "lbfgs"})
    with pytest.raises(SungenError, match="lbfgs"):
        from_dict(ReweightConfig, {"tam": {"name": "minilm", "hidden": 0, "optimizer": "lbfgs"}})
