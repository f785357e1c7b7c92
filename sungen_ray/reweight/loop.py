"""The outer loop of SunGen's bilevel reweighting, on one shard of the samples.

Per outer iteration (docs/DESIGN.md, The method): train the TAM from the fixed phi_0 on the w-weighted loss
(inner), take the gradient g of a robust loss on the top-tau validation samples (outer),
get every sample's alignment a_i = <grad CE_i, g> (hypergradient), and take an Adam step
on theta. The loop only ever holds its own shard of the samples and of theta; every sum over
samples goes through ``coll``, so one process (LocalCollectives) and W Ray Train workers
(TorchDistCollectives) run the same code. State is plain tensors so a wrapper can checkpoint it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sungen_ray.errors import SungenError
from sungen_ray.parallel.collectives import Collectives, LocalCollectives, group_sums
from sungen_ray.parallel.stable_hash import shr64, signed64, splitmix64
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.reweight.hypergrad import alignments, default_method, outer_gradient
from sungen_ray.reweight.losses import outer_loss_fn, top_tau_threshold
from sungen_ray.tam.encoded import Encoded
from sungen_ray.tam.registry import build_model
from sungen_ray.tam.train import train

HIST_BINS = 10  # weight histogram per label in the metrics


@dataclass
class Shard:
    """This worker's samples: stable ids, labels and their pre-encoded inputs."""

    idx: torch.Tensor  # int64
    labels: torch.Tensor  # int64
    data: Encoded
    num_labels: int
    encoder: object = None  # the TAM encoder (the LSTM needs its vocabulary size)
    # the generator's channel margin per sample (None when the pool has none): PLM evidence the
    # loop can start theta from and draw its pseudo-validation rows by (theta_init, valid_source)
    prior: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.idx)

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def to(self, device) -> Shard:
        """The shard with ids, labels and encoded inputs on ``device`` (once, at load)."""
        prior = None if self.prior is None else self.prior.to(device)
        return Shard(
            self.idx.to(device), self.labels.to(device), self.data.to(device), self.num_labels, self.encoder, prior
        )


def init_state(n_local: int, device=None) -> dict:
    """Checkpointable state of one worker: theta shard, Adam moments, iteration, stopping rule."""
    return {
        "iteration": 0,
        "theta": torch.zeros(n_local, device=device),
        "adam_m": torch.zeros(n_local, device=device),
        "adam_v": torch.zeros(n_local, device=device),
        "lr_scale": 1.0,
        "kept": torch.ones(n_local, dtype=torch.bool, device=device),
        "stable_iters": 0,
        "stopped": False,
    }


def uses_prior(shard: Shard, cfg: ReweightConfig) -> bool:
    return shard.prior is not None and "prior" in (cfg.theta_init, cfg.valid_source)


def initial_theta(shard: Shard, cfg: ReweightConfig, coll: Collectives) -> torch.Tensor:
    """theta_0: zeros, or the channel margin z-scored (over the whole pool, all workers, or within
    each label: ``prior_norm``) times ``prior_scale``, so the scale of theta, and so Adam's steps,
    mean the same for any task."""
    theta = torch.zeros(len(shard), device=shard.device)
    if cfg.theta_init != "prior" or shard.prior is None:
        return theta
    m = shard.prior.double()
    groups = shard.labels if cfg.prior_norm == "label" else torch.zeros_like(shard.labels)
    k = shard.num_labels if cfg.prior_norm == "label" else 1
    moments = group_sums(coll, torch.stack([torch.ones_like(m), m, m * m], 1), groups, k)  # count, sum, sum sq.
    n = moments[:, 0].clamp(min=1.0)
    mean = moments[:, 1] / n
    std = (moments[:, 2] / n - mean * mean).clamp(min=0.0).sqrt()
    # a group whose margins are all equal starts at 0
    z = torch.where(std[groups] > 0, (m - mean[groups]) / std[groups].clamp(min=1e-12), torch.zeros_like(m))
    return (cfg.prior_scale * z).float()


def valid_mask(idx: torch.Tensor, seed: int, fraction: float) -> torch.Tensor:
    """Membership of the synthetic validation subset: a hash of (idx, seed), so it is the same
    whichever worker holds a sample and however the pool is sharded."""
    x = splitmix64(idx + signed64(seed * 0x9E3779B97F4A7C15))
    return shr64(x, 11).double() / float(1 << 53) < fraction


def initial_model(shard: Shard, cfg: ReweightConfig) -> torch.nn.Module:
    """phi_0: the same on every worker and every iteration, from the seed alone (drawn on the CPU,
    so it is the same on any device, then moved to the shard's device)."""
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        return build_model(cfg.tam, shard.encoder, shard.data, shard.num_labels).to(shard.device)


def state_to(state: dict, device) -> dict:
    """``state`` with its tensors on ``device`` (checkpoints are written and read on the host)."""
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in state.items()}


def run(
    shard: Shard,
    cfg: ReweightConfig,
    coll: Collectives | None = None,
    state: dict | None = None,
    on_iteration: Callable[[dict, dict], None] | None = None,
) -> tuple[dict, list[dict]]:
    """Run outer iterations until ``cfg.outer_iters`` or the stopping rule; resumes from ``state``.

    ``on_iteration(state, metrics)`` is called after every completed iteration (checkpoint hook).
    Returns the final state and the metrics of the iterations run in this call.
    """
    coll = coll or LocalCollectives()
    if state is None:
        state = init_state(len(shard), shard.device)
        state["theta"] = initial_theta(shard, cfg, coll)
    else:
        state = state_to(state, shard.device)
    if len(state["theta"]) != len(shard):
        raise SungenError(f"resume state holds {len(state['theta'])} weights but the shard has {len(shard)} samples")
    model = initial_model(shard, cfg)
    phi0 = {k: v.clone() for k, v in model.state_dict().items()}
    history = []
    while state["iteration"] < cfg.outer_iters and not state["stopped"]:
        metrics = outer_iteration(shard, cfg, coll, state, model, phi0)
        history.append(metrics)
        if on_iteration is not None:
            on_iteration(state, metrics)
    return state, history


def outer_iteration(shard: Shard, cfg: ReweightConfig, coll: Collectives, state: dict, model, phi0) -> dict:
    t = state["iteration"]
    theta = state["theta"]
    w = torch.sigmoid(theta)
    seconds = {}

    # 1. inner problem from phi_0; a non-finite loss retries with a smaller learning rate
    clock = time.perf_counter()
    base_lr = cfg.tam.train_setting("lr")
    while True:
        model.load_state_dict(phi0)
        lr = base_lr * state["lr_scale"]
        inner = train(
            model,
            shard.data,
            shard.labels,
            w,
            cfg=cfg.tam,
            epochs=cfg.epochs_per_inner_run(),
            seed=cfg.seed * 1000 + (0 if cfg.fixed_inner_order else t),
            lr=lr,
            coll=coll,
            ids=shard.idx,  # the same global batches for any number of workers
        )
        if all(math.isfinite(x) for x in inner):
            break
        if state["lr_scale"] <= 0.5**cfg.max_lr_retries:
            raise SungenError(
                f"inner training diverged (loss {inner[-1]}) at outer iteration {t} even with lr {lr:g}; "
                "lower tam.lr or check the data"
            )
        state["lr_scale"] *= 0.5
    seconds["inner"] = time.perf_counter() - clock

    # 2. outer gradient g of the robust loss on the top-tau validation samples
    clock = time.perf_counter()
    dev = shard.device
    n_global = float(coll.all_reduce_sum(torch.tensor(float(len(shard)), dtype=torch.float64, device=dev)))
    in_valid = valid_mask(shard.idx, cfg.seed, min(1.0, cfg.valid_size / n_global))
    groups = shard.labels if cfg.tau_per_label else None
    thr = top_tau_threshold(theta, cfg.tau, coll, groups, shard.num_labels if cfg.tau_per_label else 1)
    top = theta >= thr[groups if groups is not None else 0]
    if cfg.valid_source == "prior" and shard.prior is not None:
        top = top & (shard.prior > 0)  # rows whose own prompt made them likelier than any rival's
    rows = torch.nonzero(in_valid & top).squeeze(1)
    loss_fn = outer_loss_fn(cfg.outer_loss, cfg.rce_smoothing)
    g, outer_loss, outer_count = outer_gradient(
        model,
        shard.data,
        shard.labels,
        rows,
        loss_fn,
        coll,
        cfg.eval_batch_size,
        shard.num_labels if cfg.outer_balance else None,
    )
    seconds["outer"] = time.perf_counter() - clock

    # 3. per-sample alignments a_i = <grad CE_i(phi*), g>
    clock = time.perf_counter()
    method = default_method(cfg.tam.name) if cfg.hypergrad == "auto" else cfg.hypergrad
    a = alignments(
        method,
        model,
        shard.data,
        shard.labels,
        g,
        batch_size=cfg.eval_batch_size,
        fd_eps=cfg.fd_eps,
        fd_max_move=cfg.fd_max_move,
        lookahead_lr=lr,
    )
    if cfg.alignment_norm() == "error":
        a = a / error_norms(model, shard.data, shard.labels, cfg.eval_batch_size).clamp(min=1e-6)
    seconds["hypergrad"] = time.perf_counter() - clock

    # 4. hypergradient and the Adam step on theta. dL/dtheta_i = -(eta/S) w_i (1 - w_i) (a_i - abar);
    # it is multiplied by N (i.e. divided by the mean weight instead of S) so its size does not
    # shrink with the pool and Adam's epsilon stays negligible at a million samples.
    clock = time.perf_counter()
    # centring: subtract the weighted mean alignment (the dS/dtheta term of the exact gradient),
    # per label by default so no label can gain or lose weight as a block (class drift)
    groups = shard.labels if cfg.center == "label" else torch.zeros_like(shard.labels)
    sums = group_sums(coll, torch.stack([w.double(), w.double() * a.double()], 1), groups, shard.num_labels)
    s_global = float(sums[:, 0].sum())
    abar = (sums[:, 1] / sums[:, 0].clamp(min=1e-30)).float()
    centred = a if cfg.center == "none" else a - abar[groups]
    grad = -(lr * n_global / s_global) * w * (1 - w) * centred
    grad_norm = math.sqrt(float(coll.all_reduce_sum((grad.double() ** 2).sum())))
    if grad_norm > cfg.clip:
        grad = grad * (cfg.clip / grad_norm)
    if cfg.outer_optimizer == "adam":
        adam_step(state, grad, cfg.outer_lr, t + 1)
    else:
        state["theta"] = state["theta"] - cfg.outer_lr * grad
    state["iteration"] = t + 1
    stability = update_stopping(state, cfg, coll, n_global)
    seconds["update"] = time.perf_counter() - clock

    return {
        "iteration": t + 1,
        "inner_loss": inner[-1],
        "inner_lr": lr,
        "outer_loss": outer_loss,
        "outer_count": int(outer_count),
        "hypergrad": method,
        "grad_norm": grad_norm,
        "seconds": seconds,
        **stability,
        "saturated": saturated_share(state["theta"], coll, n_global),
        "prior": uses_prior(shard, cfg),
        "weights_by_label": weight_histogram(torch.sigmoid(state["theta"]), shard.labels, shard.num_labels, coll),
    }


SATURATED_THETA = 3.0  # |theta| past this: w within 0.05 of 0 or 1, where sigmoid' (and so its step) vanishes


def saturated_share(theta: torch.Tensor, coll: Collectives, n_global: float) -> float:
    """Share of all weights that are saturated: such weights barely move any more, and their order
    reflects how long an alignment kept its sign, not how strong it was."""
    count = coll.all_reduce_sum((theta.abs() > SATURATED_THETA).sum().double())
    return float(count) / max(n_global, 1.0)


def error_norms(model, data: Encoded, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """|softmax(f(x_i)) - onehot(y_i)| per local sample, at the model's current parameters."""
    out = torch.empty(len(labels), device=labels.device)
    model.eval()
    with torch.no_grad():
        for rows in torch.arange(len(labels), device=labels.device).split(batch_size):
            err = torch.softmax(model(*data.batch(rows)).float(), dim=1)
            err[torch.arange(len(rows), device=labels.device), labels[rows]] -= 1.0
            out[rows] = err.norm(dim=1)
    model.train()
    return out


def adam_step(state: dict, grad: torch.Tensor, lr: float, step: int, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
    """Adam on the theta shard (elementwise, so sharding it changes nothing)."""
    m, v = state["adam_m"], state["adam_v"]
    m.mul_(betas[0]).add_(grad, alpha=1 - betas[0])
    v.mul_(betas[1]).addcmul_(grad, grad, value=1 - betas[1])
    m_hat = m / (1 - betas[0] ** step)
    v_hat = v / (1 - betas[1] ** step)
    state["theta"] = state["theta"] - lr * m_hat / (v_hat.sqrt() + eps)


def update_stopping(state: dict, cfg: ReweightConfig, coll: Collectives, n_global: float) -> dict:
    """Selection stability: the share of samples that crossed the top-``stop_keep`` threshold this
    iteration. Once the set a user would keep stops changing, more iterations only sharpen weights
    that no longer change the selection (and, measured on injected noise, start to drift)."""
    thr = top_tau_threshold(state["theta"], cfg.stop_keep, coll)
    kept = state["theta"] >= thr[0]
    changed = float(coll.all_reduce_sum((kept != state["kept"]).sum().double()))
    change = changed / max(n_global, 1.0)
    state["kept"] = kept
    state["stable_iters"] = state["stable_iters"] + 1 if change < cfg.stop_change else 0
    if cfg.stop_patience and state["iteration"] >= cfg.min_iters and state["stable_iters"] >= cfg.stop_patience:
        state["stopped"] = True
    return {"selection_change": change, "stopped": state["stopped"]}


def weight_histogram(w: torch.Tensor, labels: torch.Tensor, num_labels: int, coll: Collectives) -> list[dict]:
    """Per label: sample count, mean weight and a 10-bin histogram of weights on [0, 1]."""
    bins = (w * HIST_BINS).long().clamp(0, HIST_BINS - 1)
    hist = torch.zeros(num_labels * HIST_BINS, dtype=torch.float64, device=w.device)
    hist.index_add_(0, labels * HIST_BINS + bins, torch.ones(len(w), dtype=torch.float64, device=w.device))
    wsum = torch.zeros(num_labels, dtype=torch.float64, device=w.device).index_add_(0, labels, w.double())
    hist = coll.all_reduce_sum(torch.cat([hist, wsum])).cpu()  # output: the metrics are host numbers
    counts = hist[: num_labels * HIST_BINS].view(num_labels, HIST_BINS)
    out = []
    for k in range(num_labels):
        n = float(counts[k].sum())
        out.append(
            {
                "label": k,
                "count": int(n),
                "mean_weight": float(hist[num_labels * HIST_BINS + k]) / max(n, 1.0),
                "hist": [int(c) for c in counts[k]],
            }
        )
    return out
