"""Training sets for SunGen and the baselines it is judged against, from one selection table.

Every baseline keeps the same fraction of each label as SunGen did, so accuracy differences come
from *which* samples were kept, not how many:
- ``zerogen``: everything, uniform (Ye et al. 2022: train on all generated data);
- ``confidence_tam``: the samples a TAM trained on everything is most confident about (own label);
- ``confidence_plm``: the samples the PLM generated with the highest mean token log-prob;
- ``confidence_channel``: the samples with the highest channel margin, how much likelier the PLM
  finds the text under its own label's prompt than under any other's (``sungen_ray.plm.channel``);
- ``confidence_lr``: own-label probability of a logistic regression on frozen MiniLM features,
  fitted to convergence on every sample (the ten-line filter a user would write first);
- ``cleanlab``: drop ``cleanlab.filter.find_label_issues`` on cross-validated TAM probabilities.
  cleanlab is AGPL: it is an optional extra, imported only here and only when asked for.
"""

from __future__ import annotations

import typing
from typing import Literal

import numpy as np
import pandas as pd

from sungen_ray.curate.selection import SelectConfig, select, training_weights
from sungen_ray.errors import SungenError
from sungen_ray.tam import final as final_model
from sungen_ray.tasks.spec import TaskSpec

BaselineName = Literal["zerogen", "confidence_tam", "confidence_plm", "confidence_channel", "confidence_lr", "cleanlab"]
# confidence_lr's model: multinomial logistic regression over frozen MiniLM features
LR_TAM = {"name": "minilm", "hidden": 0, "optimizer": "lbfgs"}
BASELINES: tuple[str, ...] = typing.get_args(BaselineName)


def _per_label_top(scores: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
    return select(scores, labels, SelectConfig(mode="per_label_top", fraction=fraction))


def tam_probabilities(texts, labels, spec: TaskSpec, cfg: final_model.FinalConfig) -> np.ndarray:
    """(n, num_labels) probabilities of a TAM trained on every sample, uniform: the confidence
    filter's signal (also what the ablation's hybrid rows mix with the weights)."""
    trained = final_model.fit(texts, labels, spec.label_names, cfg)
    return trained.predict(texts)


def lr_confidence(texts, labels, label_names: list[str], seed: int = 0) -> np.ndarray:
    """Own-label probability of a logistic regression on frozen MiniLM features fitted on every
    sample: the confidence_lr filter's score, and a weight-health reference (its rank correlation
    with the weights, in the run report)."""
    from sungen_ray.config import from_dict

    cfg = from_dict(final_model.FinalConfig, {"tam": LR_TAM, "seed": seed, "device": "cpu"})
    probs = final_model.fit(texts, labels, label_names, cfg).predict(texts)
    return probs[np.arange(len(labels)), labels]


SCORE_COLUMNS = ("logprob", "channel_margin")  # per-sample scores a pool may carry for the filters


def pool_score_columns(pool):
    """The pool's per-sample score columns, indexed by idx (only those it has)."""
    names = [c for c in SCORE_COLUMNS if c in pool.column_names]
    return pool.select(["idx", *names]).to_pandas().set_index("idx")


def _pool_score(pool_scores: pd.DataFrame, column: str, idx: pd.Series) -> np.ndarray | None:
    """The pool's ``column`` in the order of ``idx``; None when the pool has no such scores."""
    if column not in pool_scores.columns:
        return None
    values = pool_scores[column].reindex(idx).to_numpy(dtype=np.float64)
    return None if np.isnan(values).all() else values


def _cleanlab_keep(texts, labels, spec: TaskSpec, cfg: final_model.FinalConfig, folds: int = 3) -> np.ndarray:
    try:
        from cleanlab.filter import find_label_issues
    except ImportError as exc:
        raise SungenError("baseline 'cleanlab' needs the optional package: pip install cleanlab") from exc
    rng = np.random.default_rng(cfg.seed)
    fold = rng.integers(0, folds, size=len(texts))
    probs = np.zeros((len(texts), spec.num_labels))
    for k in range(folds):
        train_rows, test_rows = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        trained = final_model.fit([texts[i] for i in train_rows], labels[train_rows], spec.label_names, cfg)
        probs[test_rows] = trained.predict([texts[i] for i in test_rows])
    return ~find_label_issues(labels, probs)


def training_sets(
    table: pd.DataFrame,
    pool_scores: pd.DataFrame,
    baselines: list[str],
    weighted: bool,
    spec: TaskSpec,
    cfg: final_model.FinalConfig,
) -> dict[str, tuple[list[str], np.ndarray, np.ndarray | None, dict]]:
    """variant -> (texts, labels, weights or None, info). ``table`` is a round's selected.parquet;
    ``pool_scores`` the pool's per-sample scores indexed by idx (``logprob``, ``channel_margin``)."""
    texts = table.text.tolist()
    labels = table.label.to_numpy().astype(np.int64)
    keep = table.keep.to_numpy()
    fraction = float(keep.mean())
    sets = {}

    def take(mask: np.ndarray, weights=None, **info):
        rows = np.flatnonzero(mask)
        shares = np.bincount(labels[rows], minlength=spec.num_labels) / max(len(rows), 1)
        info["label_shares"] = {n: float(x) for n, x in zip(spec.label_names, shares)}
        return [texts[i] for i in rows], labels[rows], None if weights is None else weights[rows], info

    scaled = None
    if weighted:  # the same training weights as `sungen-ray train` (scaled per label)
        scaled = np.zeros(len(texts))
        scaled[keep] = training_weights(table.weight.to_numpy(), labels, keep)
    sets["sungen"] = take(keep, scaled, weighted=weighted)
    if "zerogen" in baselines:
        sets["zerogen"] = take(np.ones(len(texts), dtype=bool))
    if "confidence_tam" in baselines:
        conf = tam_probabilities(texts, labels, spec, cfg)[np.arange(len(labels)), labels]
        sets["confidence_tam"] = take(_per_label_top(conf, labels, fraction))
    if "confidence_lr" in baselines:
        sets["confidence_lr"] = take(
            _per_label_top(lr_confidence(texts, labels, spec.label_names, cfg.seed), labels, fraction)
        )
    for name, column in (("confidence_plm", "logprob"), ("confidence_channel", "channel_margin")):
        if name in baselines:
            scores = _pool_score(pool_scores, column, table.idx)
            if scores is None:
                print(f"[pipeline] baseline {name} skipped: the pool has no {column} scores")
            else:
                sets[name] = take(_per_label_top(np.nan_to_num(scores, nan=-1e9), labels, fraction))
    if "cleanlab" in baselines:
        sets["cleanlab"] = take(_cleanlab_keep(texts, labels, spec, cfg))
    return sets
