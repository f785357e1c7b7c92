"""Nucleus (top-p) masking without sorting the vocabulary, for vLLM's CPU sampler.

vLLM 0.32 applies top-p on CPU by sorting every row's logits over the whole vocabulary: on the
2-core machine, with SmolLM2's 49k tokens and 256 sequences per step, that sort was half of each
decoding step (docs/RESULTS.md, "Decoding on CPU"). A row's nucleus is usually small (median 73
tokens on sst2), so the mask is found from the top K logits, K growing only for the rows whose
nucleus does not fit, and the full sort stays as the last resort. A token is kept when the
probability mass strictly above it is below p, as in vLLM; tokens tied with the last kept one are
all kept, where vLLM's unstable sort keeps an arbitrary subset. Ties are rare in float32 logits
(256 of 256 sst2 texts identical to vLLM's) and common in bfloat16 ones (247 of 256).

The replicas switch it on with ``SUNGEN_RAY_FAST_TOP_P=1``; vLLM loads ``register`` in every one
of its processes (the ``vllm.general_plugins`` entry point), so it reaches the model worker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ENV = "SUNGEN_RAY_FAST_TOP_P"
# Top-K sizes tried in turn; on sst2 128 held 60% of nuclei, 1024 95%, 8192 all but 0.01%.
TIERS = (128, 1024, 8192)

Fallback = Callable[["torch.Tensor", "torch.Tensor | None", "torch.Tensor | None"], "torch.Tensor"]


def _cut(logits: torch.Tensor, p: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: how many of the top ``k`` tokens the nucleus keeps (``k``: it may not fit) and the
    smallest kept logit."""
    import torch

    top, _ = logits.topk(k, dim=-1)
    probs = (top - torch.logsumexp(logits, dim=-1, keepdim=True)).exp_()
    above = probs.cumsum(dim=-1).sub_(probs)  # mass strictly above each ranked token
    kept = (above < p.unsqueeze(1)).sum(dim=-1).clamp_(min=1)
    return kept, top.gather(1, (kept - 1).unsqueeze(1))


def top_p_mask_(logits: torch.Tensor, p: torch.Tensor, full_sort: Fallback) -> torch.Tensor:
    """Set every logit outside its row's nucleus to -inf, in place. ``full_sort(logits, None, p)``
    masks the rows no tier holds (and rows with p >= 1, which vLLM leaves all but unmasked)."""
    import torch

    rows, vocab = logits.shape
    cut = torch.full((rows, 1), float("-inf"), dtype=logits.dtype, device=logits.device)
    todo = (p < 1).nonzero().squeeze(1)
    rest = (p >= 1).nonzero().squeeze(1)
    for k in TIERS:
        if k >= vocab or todo.numel() == 0:
            break
        sub = logits if todo.numel() == rows else logits[todo]
        kept, smallest = _cut(sub, p[todo], k)
        fits = kept < k
        cut[todo[fits]] = smallest[fits]
        todo = todo[~fits]
    rest = torch.cat([rest, todo])
    sorted_rows = full_sort(logits[rest].clone(), None, p[rest]) if rest.numel() else None
    logits.masked_fill_(logits < cut, float("-inf"))
    if sorted_rows is not None:
        logits[rest] = sorted_rows
    return logits


def install(module=None) -> bool:
    """Route vLLM's top-p-only calls through ``top_p_mask_`` (top-k keeps vLLM's own path)."""
    if module is None:
        import vllm.v1.sample.ops.topk_topp_sampler as module
    original = module.apply_top_k_top_p
    if getattr(original, "_sungen_ray", False):
        return False  # vLLM loads plugins once per process, but a test may call this again

    def apply_top_k_top_p(logits, k, p):
        if k is not None or p is None or logits.device.type != "cpu":
            return original(logits, k, p)
        return top_p_mask_(logits, p, original)

    apply_top_k_top_p._sungen_ray = True
    module.apply_top_k_top_p = apply_top_k_top_p
    return True


def register() -> None:
    """vLLM's plugin hook: a no-op unless the process was started by one of our replicas. vLLM
    calls it unguarded, so a vLLM whose sampler moved keeps its own sort instead of failing."""
    if os.environ.get(ENV) != "1":
        return
    try:
        install()
    except (ImportError, AttributeError) as exc:
        print(f"[sungen-ray] vLLM's top-p sampler not found ({exc}); keeping vLLM's own", file=sys.stderr)
