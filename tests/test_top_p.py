"""The replicas' nucleus mask (no vocabulary sort) against vLLM's own, and how it reaches vLLM."""

import importlib.metadata

import pytest
import torch

from sungen_ray.errors import SungenError
from sungen_ray.generation import top_p
from sungen_ray.generation.config import GenerateConfig
from sungen_ray.generation.engines import cpu_dtype

vllm_sampler = pytest.importorskip("vllm.v1.sample.ops.topk_topp_sampler")


def test_the_mask_is_vllms_for_small_and_huge_nuclei():
    gen = torch.Generator().manual_seed(0)
    vocab = 49152  # SmolLM2's
    # temperatures from flat to peaked: nuclei from 1 token to most of the vocabulary, so every
    # top-k tier and the full-sort fallback are used
    logits = torch.cat([torch.randn(24, vocab, generator=gen) * s for s in (0.5, 1, 2, 3, 4, 8, 16)])
    p = torch.full((len(logits),), 0.9)
    p[::7], p[1::5] = 1.0, 0.5  # rows of one batch may differ; p = 1 masks (almost) nothing
    expected = vllm_sampler.apply_top_k_top_p_pytorch(logits.clone(), None, p)
    got = top_p.top_p_mask_(logits.clone(), p, vllm_sampler.apply_top_k_top_p_pytorch)
    sizes = torch.isfinite(expected).sum(1)
    for low, high in [(1, 128), (128, 1024), (1024, 8192), (8192, vocab)]:
        assert ((sizes >= low) & (sizes < high)).any(), (low, high)
    assert torch.equal(got, expected)


def test_ties_at_the_cut_are_all_kept():
    # bfloat16 logits (the replicas' dtype on AMX machines) tie often: vLLM keeps an arbitrary
    # subset of the tokens tied with its last kept one, this mask keeps them all, and nothing else
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(64, 4096, generator=gen) * 3).to(torch.bfloat16).float()
    p = torch.full((64,), 0.9)
    expected = vllm_sampler.apply_top_k_top_p_pytorch(logits.clone(), None, p)
    got = top_p.top_p_mask_(logits.clone(), p, vllm_sampler.apply_top_k_top_p_pytorch)
    kept_by_vllm, kept = torch.isfinite(expected), torch.isfinite(got)
    assert (kept | ~kept_by_vllm).all()  # everything vLLM keeps is kept
    extra = kept & ~kept_by_vllm
    assert extra.any()  # the case this test is about did occur
    cut = expected.masked_fill(~kept_by_vllm, float("inf")).min(dim=1, keepdim=True).values
    assert (logits[extra] == cut.expand_as(logits)[extra]).all()  # ... and the extra ones are ties


def test_install_routes_top_p_only_and_once(monkeypatch):
    calls = []

    def original(logits, k, p):
        calls.append((k is not None, p is not None))
        return logits

    monkeypatch.setattr(vllm_sampler, "apply_top_k_top_p", original)
    assert top_p.install(vllm_sampler) and not top_p.install(vllm_sampler)
    logits = torch.randn(3, 300)
    masked = vllm_sampler.apply_top_k_top_p(logits.clone(), None, torch.full((3,), 0.5))
    assert calls == [] and torch.isinf(masked).any()  # top-p alone: ours, no sort
    vllm_sampler.apply_top_k_top_p(logits.clone(), torch.full((3,), 5), torch.full((3,), 0.5))
    assert calls == [(True, True)]  # with top-k: vLLM's


def test_vllm_finds_the_plugin_and_it_acts_only_in_our_replicas(monkeypatch):
    hooks = {e.name: e.value for e in importlib.metadata.entry_points(group="vllm.general_plugins")}
    assert hooks.get("sungen_ray_top_p") == "sungen_ray.generation.top_p:register"
    installed = []
    monkeypatch.setattr(top_p, "install", lambda: installed.append(1))
    monkeypatch.delenv(top_p.ENV, raising=False)
    top_p.register()
    assert installed == []
    monkeypatch.setenv(top_p.ENV, "1")
    top_p.register()
    assert installed == [1]


def test_a_vllm_without_the_sampler_keeps_running(monkeypatch, capsys):
    # vLLM calls its plugins unguarded: a moved sampler must not stop the engine from starting
    def missing(module=None):
        raise AttributeError("module has no attribute 'apply_top_k_top_p'")

    monkeypatch.setattr(top_p, "install", missing)
    monkeypatch.setenv(top_p.ENV, "1")
    top_p.register()
    assert "keeping vLLM's own" in capsys.readouterr().err


def test_auto_dtype_on_cpu_is_float32():
    assert cpu_dtype("auto") == "float32" and cpu_dtype("bfloat16") == "bfloat16"


def test_dtype_is_part_of_the_pools_identity():
    from sungen_ray.tasks.spec import load_task

    spec = load_task("sst2")
    auto = GenerateConfig(task="sst2", num_samples=8, out="o")
    assert auto.identity(spec) != GenerateConfig(task="sst2", num_samples=8, out="o", dtype="float32").identity(spec)
    bad = GenerateConfig(task="sst2", num_samples=8, out="o", dtype="int8")
    with pytest.raises(SungenError, match="dtype: must be one of"):
        bad.validate()
