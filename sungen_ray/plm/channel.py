"""What the generator itself says about a sample's label: its channel scores.

For every text x and every label k, ``log P(x" | prompt_k)`` under the PLM that wrote the pool,
the prompt being the label's own generation prompt (the closing quote included, so a text that
would not end there scores lower). The channel margin of a sample with label y is
``score_y - max_{k != y} score_k``: how much more likely its own prompt made it than the best
rival's. It needs one prefill per (text, label) and no decoding, so it costs K forward passes of
short sequences per text, against the tens of decode steps that wrote it.

Label prompts with a ``{condition}`` slot (imdb, yelp) are scored with a neutral filler in the
slot: the pool does not keep which condition a row was written for, and the margin compares
labels under the same filler, so the condition cancels to first order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sungen_ray.errors import SungenError
from sungen_ray.tasks.spec import TaskSpec

CONDITION_FILLER = "it"
CLOSING = '"'


def label_prompts(spec: TaskSpec) -> list[str]:
    """One prompt per label: its first template, a condition slot filled with a neutral word."""
    return [label.prompts[0].replace("{condition}", CONDITION_FILLER) for label in spec.labels]


@dataclass
class ChannelScores:
    scores: np.ndarray  # (n, K) summed log-prob of text + closing quote under each label's prompt
    seconds: float
    from_generation: int = 0  # own-label scores that generation gave (see OwnScore)

    def margin(self, labels: np.ndarray) -> np.ndarray:
        """Own label's score minus the best other label's (positive = the PLM agrees)."""
        n = len(labels)
        own = self.scores[np.arange(n), labels]
        others = self.scores.copy()
        others[np.arange(n), labels] = -np.inf
        return own - others.max(axis=1)


def token_ids(texts: list[str], spec: TaskSpec, tokenizer, max_text_tokens: int = 256):
    """Each label prompt's ids and each text's (closing quote included): the text is tokenised once
    and appended to every prompt, so every label scores exactly the same text tokens."""
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in label_prompts(spec)]
    return prompts, [body_ids(t, tokenizer, max_text_tokens) for t in texts]


def body_ids(text: str, tokenizer, max_text_tokens: int = 256) -> list[int]:
    """The tokens a text is scored on: the text and its closing quote, cut at ``max_text_tokens``."""
    return tokenizer(text + CLOSING, add_special_tokens=False)["input_ids"][: max_text_tokens + 1]


def _load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path)
    except OSError as exc:
        raise SungenError(f"channel scoring: cannot load the generator from {model_path}: {exc}") from exc


class OwnScore:
    """A generated row's own-label channel score, taken from its generation where the engine's
    sampled tokens are exactly what the scorer would score: the row's prompt is its label's scoring
    prompt, and its text plus the closing quote tokenises back to the sampled tokens (vLLM's sample
    log-probs are the model's raw ones, so their sum is the prompt log-prob score). Such a row needs
    K - 1 prefills instead of K: half the scoring of a 2-label task. NaN where they differ (a token
    that runs past the quote, a text cut at the length limit, a prompt with examples or a condition)."""

    def __init__(self, spec: TaskSpec, model_path: str, max_text_tokens: int = 256):
        self.tokenizer = _load_tokenizer(model_path)
        self.prompts = label_prompts(spec)
        self.max_text_tokens = max_text_tokens
        # an engine that adds special tokens (a BOS) to a text prompt conditions on other tokens
        plain = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in self.prompts]
        self.usable = all(self.tokenizer(p)["input_ids"] == ids for p, ids in zip(self.prompts, plain))

    def __call__(self, prompt: str, label: int, text: str, sampled, logprob_sum: float) -> float:
        if not self.usable or sampled is None or not math.isfinite(logprob_sum) or prompt != self.prompts[label]:
            return math.nan
        body = body_ids(text, self.tokenizer, self.max_text_tokens)
        return float(logprob_sum) if [int(t) for t in sampled] == body else math.nan


def channel_scores_on_engines(
    texts: list[str],
    spec: TaskSpec,
    model_path: str,
    engines,
    max_text_tokens: int = 256,
    progress=None,
    labels: np.ndarray | None = None,
    own: np.ndarray | None = None,
) -> ChannelScores:
    """(n, K) channel scores from the run's live vLLM replicas: the same sums as ``channel_scores``,
    from vLLM's prompt log-probs (prefill only), with no second copy of the model loaded. ``own``:
    each row's own-label score where generation already gave it (``OwnScore``; NaN: score it),
    ``labels`` saying which column that is."""
    start = time.perf_counter()
    prompts, bodies = token_ids(texts, spec, _load_tokenizer(model_path), max_text_tokens)
    k, n = len(prompts), len(texts)
    scores = np.full((n, k), np.nan)
    given = np.zeros(n, dtype=bool) if own is None else np.isfinite(own)
    if given.any():
        scores[given, labels[given]] = own[given]
    need = [(i, j) for i in range(n) for j in range(k) if not (given[i] and j == labels[i])]
    seqs = [prompts[j] + bodies[i] for i, j in need]
    starts = [len(prompts[j]) for _, j in need]
    done = (lambda m: progress(m * n // max(1, len(seqs)), n)) if progress is not None else None
    if need:
        rows, cols = zip(*need)
        scores[list(rows), list(cols)] = engines.score(seqs, starts, progress=done)
    _check_finite(scores, model_path)
    return ChannelScores(scores, time.perf_counter() - start, int(given.sum()))


def _check_finite(scores: np.ndarray, model_path: str) -> None:
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).any(axis=1).sum())
        raise SungenError(f"channel scoring: {bad} texts got a non-finite score (check the model at {model_path})")


def channel_scores(
    texts: list[str],
    spec: TaskSpec,
    model_path: str,
    *,
    batch_size: int = 64,
    max_text_tokens: int = 256,
    device: str = "cpu",
    progress=None,
) -> ChannelScores:
    """(n, K) channel scores with transformers (prefill only), in this process."""
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    tokenizer = _load_tokenizer(model_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device).eval()
    except OSError as exc:
        raise SungenError(f"channel scoring: cannot load the generator from {model_path}: {exc}") from exc
    prompts, bodies = token_ids(texts, spec, tokenizer, max_text_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = np.zeros((len(texts), len(prompts)), dtype=np.float64)
    # longest first so a batch holds similar lengths (less padding), results put back by position
    order = sorted(range(len(texts)), key=lambda i: -len(bodies[i]))
    done = 0
    with torch.inference_mode():
        for chunk_start in range(0, len(order), batch_size):
            rows = order[chunk_start : chunk_start + batch_size]
            for k, prompt in enumerate(prompts):
                seqs = [prompt + bodies[i] for i in rows]
                width = max(len(s) for s in seqs)
                ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                mask = torch.zeros((len(seqs), width), dtype=torch.long)
                for j, s in enumerate(seqs):
                    ids[j, : len(s)] = torch.tensor(s)
                    mask[j, : len(s)] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:].to(device).unsqueeze(2))
                logp = logp.squeeze(2).cpu()
                for j, i in enumerate(rows):
                    # positions predicting the body tokens: from len(prompt) - 1 up to the sequence end
                    scores[i, k] = float(logp[j, len(prompt) - 1 : len(prompt) - 1 + len(bodies[i])].sum())
            done += len(rows)
            if progress is not None:
                progress(done, len(texts))
    _check_finite(scores, model_path)
    return ChannelScores(scores, time.perf_counter() - start)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); nan when either side is constant."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else math.nan


def _ranks(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inverse, ranks)
    return (sums / counts)[inverse]


@dataclass
class ChannelConfig:
    """Whether the generation stage scores its pool under every label's prompt. It costs K
    prefills per text (about as much as generating the text, for K = 2, on a CPU), so ``auto``
    scores tasks of at most ``max_labels`` labels and leaves wider ones (dbpedia's 14) unscored."""

    enabled: bool | None = None  # None: auto
    max_labels: int = 4
    batch_size: int = 64

    def validate(self) -> None:
        if self.max_labels < 2:
            raise SungenError(f"max_labels: must be >= 2, got {self.max_labels}")
        if self.batch_size < 1:
            raise SungenError(f"batch_size: must be >= 1, got {self.batch_size}")

    def active(self, num_labels: int) -> bool:
        return self.enabled if self.enabled is not None else num_labels <= self.max_labels


def add_channel_margin(
    files: list,
    spec: TaskSpec,
    model_path: str,
    batch_size: int = 64,
    device: str = "cpu",
    engines=None,
    own: dict[int, float] | None = None,
) -> dict:
    """Score every pool file that lacks a ``channel_margin`` column and rewrite it with the column
    (atomically, file by file: an interrupted run keeps the files it finished and scores the rest
    on the next call). Returns texts scored and seconds. ``engines``: live vLLM replicas of the
    same model to score on (the driver's); None scores with transformers in this process. ``own``:
    own-label scores by ``idx`` that generation gave (``read_own_scores``), used on the engines."""
    import pyarrow as pa

    from sungen_ray.data import atomic
    from sungen_ray.data.labelled import read_parquet
    from sungen_ray.parallel.progress import Progress

    tables = {f: table for f in files if "channel_margin" not in (table := read_parquet(f)).column_names}
    total = sum(t.num_rows for t in tables.values())
    scored, seconds, from_generation = 0, 0.0, 0
    if not total:
        return {"texts": 0, "seconds": 0.0, "from_generation": 0}
    progress = Progress(f"channel scores x{spec.num_labels} labels", total, unit="texts")
    try:
        for f, table in tables.items():
            labels = table.column("label").to_numpy().astype(np.int64)
            if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_labels):
                raise SungenError(f"{f}: labels out of range for task {spec.name!r} ({spec.num_labels} labels)")
            texts = table.column("text").to_pylist()
            if engines is not None:
                given = None
                if own and "idx" in table.column_names:
                    given = np.array([own.get(i, np.nan) for i in table.column("idx").to_pylist()], dtype=np.float64)
                result = channel_scores_on_engines(
                    texts,
                    spec,
                    model_path,
                    engines,
                    progress=lambda done, _n, base=scored: progress.update(base + done),
                    labels=labels,
                    own=given,
                )
            else:
                result = channel_scores(
                    texts,
                    spec,
                    model_path,
                    batch_size=batch_size,
                    device=device,
                    progress=lambda done, _n, base=scored: progress.update(base + done),
                )
            margin = pa.array(result.margin(labels).astype(np.float32), pa.float32())
            atomic.write_parquet(f, table.append_column("channel_margin", margin))
            scored += table.num_rows
            seconds += result.seconds
            from_generation += result.from_generation
    finally:
        progress.close()
    return {"texts": scored, "seconds": round(seconds, 2), "from_generation": from_generation}


# beside a pool's data/, dot-prefixed: a pool directory read as data (parquet_files) skips it
OWN_SCORES_FILE = ".channel_own.parquet"  # idx, channel_own (OwnScore)


def write_own_scores(pool_dir, idx: np.ndarray, scores: np.ndarray) -> None:
    """The own-label scores generation gave (finite ones only; nothing when there are none)."""
    import pyarrow as pa

    from sungen_ray.data import atomic

    keep = np.isfinite(scores)
    if keep.any():
        table = pa.table({"idx": pa.array(idx[keep], pa.int64()), "channel_own": pa.array(scores[keep], pa.float64())})
        atomic.write_parquet(Path(pool_dir) / OWN_SCORES_FILE, table)


def read_own_scores(pool_dir) -> dict[int, float]:
    """``write_own_scores``' file as {idx: score}; empty when the pool has none (an older pool, the
    transformers engine). An unreadable file only costs the scoring it would have saved."""
    import pyarrow.parquet as pq

    path = Path(pool_dir) / OWN_SCORES_FILE
    if not path.is_file():
        return {}
    try:
        table = pq.read_table(path, columns=["idx", "channel_own"])
    except (OSError, ValueError, KeyError) as exc:
        print(f"[channel] {path}: unreadable ({exc}); scoring every label", flush=True)
        return {}
    return dict(zip(table.column("idx").to_pylist(), table.column("channel_own").to_pylist()))
