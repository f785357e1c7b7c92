import dataclasses

import numpy as np
import pytest
import torch
from reweight_data import flip, sentiment_texts

from sungen_ray.config import from_dict
from sungen_ray.errors import SungenError
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.reweight.loop import Shard, run
from sungen_ray.tam import build_encoder


def _shard(n=600, share=0.3, iters=6, one_class=False):
    texts, labels = sentiment_texts(n)
    if one_class:  # only label-0 rows are flipped: the noisy label counts become unbalanced
        noisy, flipped = flip(labels, share)
        flipped &= labels == 0
        noisy = np.where(flipped, 1 - labels, labels)
    else:
        noisy, flipped = flip(labels, share)
    cfg = from_dict(
        ReweightConfig,
        {
            "tam": {"name": "bow", "buckets": 1 << 12, "batch_size": 32},
            "outer_iters": iters,
            "stop_patience": 0,
            "outer_lr": 0.1,
        },
    )
    enc = build_encoder(cfg.tam)
    shard = Shard(torch.arange(n), torch.from_numpy(noisy), enc.encode(texts), 2, enc)
    return shard, flipped, cfg


@pytest.mark.parametrize("one_class", [False, True])
def test_clean_samples_end_above_flipped_ones(one_class):
    shard, flipped, cfg = _shard(share=0.4 if one_class else 0.3, one_class=one_class)
    state, history = run(shard, cfg)
    w = torch.sigmoid(state["theta"]).numpy()
    assert len(history) == cfg.outer_iters
    assert w[~flipped].mean() > w[flipped].mean() + 0.1
    # most of the lowest-weighted rows (as many as were flipped) are flipped rows
    assert flipped[np.argsort(w)[: int(flipped.sum())]].mean() > 0.6
    for m in history:
        assert set(m["seconds"]) == {"inner", "outer", "hypergrad", "update"}
        assert sum(h["count"] for h in m["weights_by_label"]) == len(w)


def test_resume_continues_identically():
    shard, _, cfg = _shard(200, iters=4)
    straight, _ = run(shard, cfg)
    half = ReweightConfig(**{**cfg.__dict__, "outer_iters": 2})
    first, _ = run(shard, half)
    saved = {k: v.clone() if torch.is_tensor(v) else v for k, v in first.items()}
    resumed, history = run(shard, cfg, state=saved)
    assert [m["iteration"] for m in history] == [3, 4]
    assert torch.equal(resumed["theta"], straight["theta"])


def test_divergence_is_a_clear_error():
    shard, _, cfg = _shard(100)
    bad = from_dict(
        ReweightConfig,
        {
            "tam": {"name": "bow", "lr": 1e30, "optimizer": "sgd", "batch_size": 10, "buckets": 1 << 12},
            "outer_iters": 1,
            "max_lr_retries": 1,
        },
    )
    with pytest.raises(SungenError, match="diverged"):
        run(shard, bad)


def test_loop_passes_inner_lr_as_lookahead_and_its_own_fd_cap(monkeypatch):
    """alignments' options after g are keyword-only, and the loop gives the finite-difference cap
    its own setting (it used to pass the inner learning rate positionally into fd_max_move)."""
    import inspect

    from sungen_ray.reweight import hypergrad, loop

    params = list(inspect.signature(hypergrad.alignments).parameters.values())
    after_g = params[[p.name for p in params].index("g") + 1 :]
    assert after_g and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in after_g)
    seen = []

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return hypergrad.alignments(*args, **kwargs)

    monkeypatch.setattr(loop, "alignments", recording)
    shard, _, cfg = _shard(100, iters=1)
    cfg.tam.lr = 0.004
    run(shard, cfg)
    assert seen[0]["lookahead_lr"] == 0.004
    assert seen[0]["fd_max_move"] == cfg.fd_max_move
    assert seen[0]["fd_eps"] == cfg.fd_eps


@pytest.mark.parametrize("fixed", [False, True])
def test_inner_order_changes_per_iteration_unless_fixed(monkeypatch, fixed):
    """The inner problem's batch order comes from its seed: a new one every outer iteration by
    default, one for all with fixed_inner_order (the ablation that takes shuffling noise out)."""
    from sungen_ray.reweight import loop

    seeds, real_train = [], loop.train

    def recording(*args, **kwargs):
        seeds.append(kwargs["seed"])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(loop, "train", recording)
    shard, _, cfg = _shard(100, iters=3)
    cfg.fixed_inner_order = fixed
    run(shard, cfg)
    assert len(seeds) == 3
    assert (len(set(seeds)) == 1) == fixed


def test_alignment_norm_follows_the_tam_unless_set(monkeypatch):
    """The error-norm division is the frozen-MiniLM head's default only: on the bow TAM it shrank
    the one-class Subj flips' alignments with their large errors (AUC 0.936 -> 0.887)."""
    from sungen_ray.reweight import loop

    calls = []
    real = loop.error_norms
    monkeypatch.setattr(loop, "error_norms", lambda *a, **k: calls.append(1) or real(*a, **k))
    shard, _, cfg = _shard(n=200, iters=1)
    assert cfg.tam.name == "bow" and cfg.align_norm is None
    run(shard, cfg)
    assert calls == [], "bow's default divides nothing"
    run(shard, dataclasses.replace(cfg, align_norm="error"))
    assert calls == [1], "an explicit align_norm wins"
    assert from_dict(ReweightConfig, {"tam": {"name": "minilm"}}).alignment_norm() == "error"
    assert from_dict(ReweightConfig, {"tam": {"name": "minilm"}, "align_norm": "none"}).alignment_norm() == "none"
