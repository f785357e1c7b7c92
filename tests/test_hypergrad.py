import torch
from reweight_data import flip, sentiment_texts
from torch.func import functional_call

from sungen_ray.parallel.collectives import LocalCollectives
from sungen_ray.reweight.hypergrad import alignments, outer_gradient, params_of
from sungen_ray.reweight.losses import ce, outer_loss_fn
from sungen_ray.tam import TamConfig, build_encoder, build_model, train


def _trained(name: str, n: int):
    texts, labels = sentiment_texts(n)
    noisy, _ = flip(labels, 0.3)
    cfg = TamConfig(name=name, max_len=16, buckets=1 << 14, vocab_size=500)
    enc = build_encoder(cfg, texts)
    x = enc.encode(texts)
    torch.manual_seed(0)
    model = build_model(cfg, enc, x, 2)
    y = torch.from_numpy(noisy)
    train(model, x, y, cfg=cfg, epochs=1)
    g, _, _ = outer_gradient(model, x, y, torch.arange(n // 2), outer_loss_fn("rce"), LocalCollectives())
    return model, x, y, g


def _cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a, b, 0))


def test_three_forms_agree_bow():
    model, x, y, g = _trained("bow", 300)
    ref = alignments("reference", model, x, y, g, batch_size=128)
    assert _cos(alignments("jvp", model, x, y, g), ref) >= 0.99
    assert _cos(alignments("fd", model, x, y, g), ref) >= 0.99


def test_fd_agrees_with_reference_lstm():
    model, x, y, g = _trained("lstm", 96)
    ref = alignments("reference", model, x, y, g, batch_size=48)
    assert _cos(alignments("fd", model, x, y, g), ref) >= 0.99


def test_reference_is_the_true_lookahead_derivative():
    """The double-backward form equals d L_out(phi - eta sum_i u_i grad CE_i) / d u_i for a small step."""
    model, x, y, g = _trained("bow", 64)
    rows = torch.arange(32)
    params = params_of(model)
    loss_fn = outer_loss_fn("rce")
    eta = 1e-3
    u = torch.zeros(64, requires_grad=True)
    live = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    grads = torch.autograd.grad(
        (ce(functional_call(model, live, x.batch(torch.arange(64))), y) * u).sum(),
        list(live.values()),
        create_graph=True,
    )
    stepped = {k: live[k] - eta * gr for k, gr in zip(live, grads)}
    out = loss_fn(functional_call(model, stepped, x.batch(rows)), y[rows]).mean()
    (du,) = torch.autograd.grad(out, u)
    ref = alignments("reference", model, x, y, g)
    assert _cos(du / -eta, ref) >= 0.99


def test_label_balanced_outer_gradient_weighs_labels_equally():
    """Balanced g is the mean of the per-label mean-loss gradients, however unbalanced the rows are."""
    model, x, y, _ = _trained("bow", 200)
    rows = torch.cat([torch.nonzero(y == 0).squeeze(1)[:10], torch.nonzero(y == 1).squeeze(1)[:90]])
    loss_fn, coll = outer_loss_fn("rce"), LocalCollectives()
    g, loss, count = outer_gradient(model, x, y, rows, loss_fn, coll, num_labels=2)
    parts = [outer_gradient(model, x, y, rows[y[rows] == k], loss_fn, coll) for k in (0, 1)]
    assert count == 100
    assert abs(loss - (parts[0][1] + parts[1][1]) / 2) < 1e-5
    for name, value in g.items():
        assert torch.allclose(value, (parts[0][0][name] + parts[1][0][name]) / 2, atol=1e-6)
    plain, _, _ = outer_gradient(model, x, y, rows, loss_fn, coll)
    assert not torch.allclose(plain["out.bias"], g["out.bias"], atol=1e-3)


def test_a_worker_without_outer_rows_adds_nothing_to_the_balanced_gradient():
    """A shard can hold none of the outer rows (small shards, per-label tau); its share of the
    label-balanced gradient is zero, not an error, so the all-reduce over workers stays whole."""
    model, x, y, _ = _trained("bow", 40)
    none = torch.arange(0)
    g, loss, count = outer_gradient(model, x, y, none, outer_loss_fn("rce"), LocalCollectives(), num_labels=2)
    assert count == 0 and loss == 0
    assert all(float(v.abs().max()) == 0 for v in g.values())
