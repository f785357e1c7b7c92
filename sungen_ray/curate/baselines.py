"""Training sets for SunGen and the baselines it is judged against, from one selection table.

Every baseline keeps the same fraction of each label as SunGen did, so accuracy differences come
from *which* samples were kept, not how many:
- ``zerogen``: everything, uniform (Ye et al. 2022: train on all generated data);
- ``confidence_tam``: the samples a TAM trained on everything is most confident about (own label);
- ``confidence_plm``: the samples the PLM generated with the highest mean token log-prob;
- ``cleanlab``: drop ``cleanlab.filter.find_label_issues`` on cross-validated TAM probabilities.
  cleanlab is AGPL: it is an optional extra, imported only here and only when asked for.
"""

from __future__ import annotations

import typing
from typing import Literal

import numpy as np
import pandas as pd

from sungen_ray.curate.selection import SelectConfig, select
from sungen_ray.errors import SungenError
from sungen_ray.tam import final as final_model
from sungen_ray.tasks.spec import TaskSpec

BaselineName = Literal["zerogen", "confidence_tam", "confidence_plm", "cleanlab"]
BASELINES: tuple[str, ...] = typing.get_args(BaselineName)


def _per_label_top(scores: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
    return select(scores, labels, SelectConfig(mode="per_label_top", fraction=fraction))


def tam_probabilities(texts, labels, spec: TaskSpec, cfg: final_model.FinalConfig) -> np.ndarray:
    """(n, num_labels) probabilities of a TAM trained on every sample, uniform: the confidence
    filter's signal (also what the ablation's hybrid rows mix with the weights)."""
    trained = final_model.fit(texts, labels, spec.label_names, cfg)
    return trained.predict(texts)


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
    logprobs: pd.Series,
    baselines: list[str],
    weighted: bool,
    spec: TaskSpec,
    cfg: final_model.FinalConfig,
) -> dict[str, tuple[list[str], np.ndarray, np.ndarray | None, dict]]:
    """variant -> (texts, labels, weights or None, info). ``table`` is a round's selected.parquet."""
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

    sets["sungen"] = take(keep, table.weight.to_numpy() if weighted else None, weighted=weighted)
    if "zerogen" in baselines:
        sets["zerogen"] = take(np.ones(len(texts), dtype=bool))
    if "confidence_tam" in baselines:
        conf = tam_probabilities(texts, labels, spec, cfg)[np.arange(len(labels)), labels]
        sets["confidence_tam"] = take(_per_label_top(conf, labels, fraction))
    if "confidence_plm" in baselines:
        lp = logprobs.reindex(table.idx).to_numpy(dtype=np.float64)
        if np.isnan(lp).all():
            print("[pipeline] baseline confidence_plm skipped: the pool has no log-probs")
        else:
            sets["confidence_plm"] = take(_per_label_top(np.nan_to_num(lp, nan=-1e9), labels, fraction))
    if "cleanlab" in baselines:
        sets["cleanlab"] = take(_cleanlab_keep(texts, labels, spec, cfg))
    return sets
