import math

import torch

from sungen_ray.parallel.collectives import LocalCollectives
from sungen_ray.reweight.losses import mae, rce, top_tau_threshold


def test_rce_matches_hand_computation():
    logits = torch.log(torch.tensor([[0.7, 0.3], [0.2, 0.8]]))
    # q = softmax(10 * onehot): log q_y = 10 - log(e^10 + 1), log q_other = -log(e^10 + 1)
    c = math.log(math.exp(10) + 1)
    expected = [-(0.7 * (10 - c) + 0.3 * -c), -(0.8 * -c + 0.2 * (10 - c))]
    assert torch.allclose(rce(logits, torch.tensor([0, 1]) * torch.tensor([1, 0])), torch.tensor(expected), atol=1e-5)
    assert abs(expected[0] - 3.0000454) < 1e-6


def test_outer_losses_are_bounded():
    logits = torch.randn(1000, 4) * 50
    y = torch.randint(0, 4, (1000,))
    c = 10 + math.log1p(3 * math.exp(-10))
    r = rce(logits, y)
    assert r.min() >= c - 10 - 1e-4 and r.max() <= c + 1e-4
    m = mae(logits, y)
    assert m.min() >= 0 and m.max() <= 1


def test_top_tau_threshold_keeps_tau_fraction():
    coll = LocalCollectives()
    theta = torch.randn(20_000) * 3
    thr = top_tau_threshold(theta, 0.9, coll)
    assert abs(float((theta >= thr).float().mean()) - 0.9) < 1e-3
    groups = torch.randint(0, 3, (20_000,))
    shifted = theta + 5 * groups
    thr = top_tau_threshold(shifted, 0.7, coll, groups, 3)
    for k in range(3):
        assert abs(float((shifted[groups == k] >= thr[k]).float().mean()) - 0.7) < 2e-3
    assert float(top_tau_threshold(torch.zeros(10), 0.9, coll)) <= 0  # ties keep everything
