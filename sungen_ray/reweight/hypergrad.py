"""The outer gradient g and the per-sample alignments a_i = <grad_phi CE_i(phi*), g>.

The hypergradient of the outer loss w.r.t. theta_i is -(eta / S) * sigmoid'(theta_i) * (a_i - abar)
(one-step look-ahead at phi*, see docs/DESIGN.md and ``loop.py``). a_i is a directional derivative of
CE_i along g, so it can be had three ways that must agree:

- ``reference``: the public SunGen way, a look-ahead step phi' = phi* - eta * sum_i u_i grad CE_i built
  with create_graph, then a second backward of <phi', g> to the per-sample coefficients u;
- ``jvp``: forward-mode AD, torch.func.jvp over functional_call, one forward pass with tangents;
- ``fd``: central finite difference (CE_i(phi + h g) - CE_i(phi - h g)) / 2h, two plain forward passes,
  for any model (fused LSTM kernels have no forward-mode rules).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jvp

from sungen_ray.errors import SungenError
from sungen_ray.parallel.collectives import Collectives, all_reduce_grads, group_sums
from sungen_ray.reweight.losses import ce
from sungen_ray.tam.encoded import Encoded

METHODS = ("fd", "jvp", "reference")


def default_method(tam_name: str) -> str:
    """Forward-mode where every op of the TAM has a rule; finite differences otherwise."""
    return "fd" if tam_name == "lstm" else "jvp"


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters()}


def outer_gradient(
    model: nn.Module,
    data: Encoded,
    labels: torch.Tensor,
    rows: torch.Tensor,
    loss_fn,
    coll: Collectives,
    batch_size: int = 8192,
    num_labels: int | None = None,
) -> tuple[dict[str, torch.Tensor], float, float]:
    """g = grad of the mean outer loss over the outer rows of all workers; also (mean loss, count).

    With ``num_labels`` the mean is label-balanced: every label present among the outer rows
    weighs the same, whatever its row count (each row 1 / (labels present x its label's count)).
    """
    dev = labels.device
    count = float(coll.all_reduce_sum(torch.tensor(float(len(rows)), dtype=torch.float64, device=dev)))
    if num_labels is None:
        row_weight = torch.full((len(labels),), 1.0 / max(count, 1.0), device=dev)
    else:
        per_label = group_sums(coll, torch.ones(len(rows), device=dev), labels[rows], num_labels)[:, 0]
        present = max(int((per_label > 0).sum()), 1)
        row_weight = (1.0 / (present * per_label.clamp(min=1.0))).float()[labels]
    params = dict(model.named_parameters())
    model.zero_grad(set_to_none=False)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    for chunk in rows.split(batch_size):
        loss = (loss_fn(model(*data.batch(chunk)), labels[chunk]) * row_weight[chunk]).sum()
        loss.backward()
        loss_sum += loss.detach().double()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params.values()]
    all_reduce_grads(coll, grads)
    g = {k: gr.detach() for k, gr in zip(params, grads)}
    model.zero_grad(set_to_none=True)  # the parameters let go of their grads: g owns them, no copy
    return g, float(coll.all_reduce_sum(loss_sum)), count


def alignments(
    method: str,
    model: nn.Module,
    data: Encoded,
    labels: torch.Tensor,
    g: dict[str, torch.Tensor],
    *,
    batch_size: int = 8192,
    fd_eps: float = 1e-3,
    fd_max_move: float = 1e-2,
    lookahead_lr: float = 1.0,
) -> torch.Tensor:
    """a_i = <grad CE_i(phi), g> for every local sample, phi the model's current parameters."""
    params = params_of(model)
    out = torch.empty(len(data), device=labels.device)
    if method == "fd":
        # step h so the first-order change of the outer loss, h * |g|^2, is fd_eps: big enough for
        # float32 rounding of the per-sample losses to be negligible, small enough for the O(h^2) term;
        # the parameter move h * |g| is capped so a near-zero g (a memorised outer set) stays local
        g_sq = float(sum((v.double() ** 2).sum() for v in g.values()))
        h = min(fd_eps / max(g_sq, 1e-30), fd_max_move / max(g_sq, 1e-30) ** 0.5)
        plus = {k: params[k] + h * g[k] for k in params}
        minus = {k: params[k] - h * g[k] for k in params}
    model.eval()
    for rows in torch.arange(len(data), device=labels.device).split(batch_size):
        batch, y = data.batch(rows), labels[rows]
        if method == "fd":
            with torch.no_grad():
                hi = ce(functional_call(model, plus, batch), y)
                lo = ce(functional_call(model, minus, batch), y)
            out[rows] = ((hi.double() - lo.double()) / (2 * h)).float()
        elif method == "jvp":
            with torch.no_grad():
                _, tangent = jvp(lambda p, b=batch, y=y: ce(functional_call(model, p, b), y), (params,), (g,))
            out[rows] = tangent
        elif method == "reference":
            out[rows] = _lookahead_alignment(model, params, batch, y, g, lookahead_lr)
        else:
            raise SungenError(f"hypergrad: must be one of fd, jvp, reference (or auto), got {method!r}")
    model.train()
    return out


def _lookahead_alignment(model, params, batch, y, g, eta):
    """d/du_i <phi*(u), g> at u = 0 for the step phi*(u) = phi - eta * grad sum_i u_i CE_i, over -eta."""
    u = torch.zeros(len(y), device=y.device, requires_grad=True)
    live = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    inner = (ce(functional_call(model, live, batch), y) * u).sum()
    grads = torch.autograd.grad(inner, list(live.values()), create_graph=True, allow_unused=True)
    stepped = sum(((live[k] - eta * gr) * g[k]).sum() for k, gr in zip(live, grads) if gr is not None)
    (du,) = torch.autograd.grad(stepped, u)
    return (du / -eta).detach()
