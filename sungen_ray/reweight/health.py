"""Weight health without gold labels: is a finished run's ranking one to trust?

Three signals a user can read with no labelled data at all: how many weights saturated (a
saturated weight stopped moving; the order among saturated weights is the order in which their
alignments flipped sign, not evidence), whether the stopping rule ended the run, and how the
weights rank against two independent cheap scorers, the generator's channel margin and a
logistic regression's own-label confidence (rank correlations within each label, since selection
is per label). A run that saturates most of its weights without the stopping rule firing is
flagged, in ``metrics.json`` and in the run report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sungen_ray.data.atomic import read_json, write_json
from sungen_ray.plm.channel import rank_correlation
from sungen_ray.reweight.loop import SATURATED_THETA

SATURATED_FLAG = 0.5  # share of saturated weights past which a run is flagged
LR_MAX_ROWS = 200_000  # the LR reference re-reads and encodes every text; past this it is skipped


def within_label_correlation(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean over labels of Spearman's rho between ``a`` and ``b`` inside the label (size-weighted)."""
    total, rho_sum = 0, 0.0
    for k in np.unique(labels):
        rows = labels == k
        if rows.sum() < 3:
            continue
        rho = rank_correlation(a[rows], b[rows])
        if np.isfinite(rho):
            rho_sum += rho * rows.sum()
            total += int(rows.sum())
    return round(rho_sum / total, 4) if total else None


def health(history: list[dict], theta: np.ndarray, labels: np.ndarray, channel=None, lr_conf=None) -> dict:
    """The health record of a finished run (see the module docstring)."""
    saturated = float((np.abs(theta) > SATURATED_THETA).mean()) if len(theta) else 0.0
    stopped = bool(history and history[-1].get("stopped"))
    out = {
        "saturated_share": round(saturated, 4),
        "stopped_early": stopped,
        "stop_iteration": len(history) if stopped else None,
        "used_prior": bool(history and history[-1].get("prior")),
        "rho_channel": None if channel is None else within_label_correlation(theta, channel, labels),
        "rho_confidence_lr": None if lr_conf is None else within_label_correlation(theta, lr_conf, labels),
        "flags": [],
    }
    if saturated > SATURATED_FLAG and not stopped:
        out["flags"].append(
            f"{saturated:.0%} of the weights saturated (|theta| > {SATURATED_THETA:g}) and the stopping rule did not fire: "
            "their order says how long an alignment kept its sign, not how strong it was; "
            "lower outer_lr or fewer outer_iters"
        )
    for name in ("rho_channel", "rho_confidence_lr"):
        if out[name] is not None and out[name] < 0:
            out["flags"].append(f"the weights rank against the {name[4:]} score (rho {out[name]:+.2f})")
    return out


def add_health(out: Path, pool, num_labels: int | None, tam_name: str) -> dict:
    """Compute the health of the finished run in ``out`` for the pool at ``pool`` and write it into
    ``metrics.json`` (field ``health``); a run that already has it is read, not recomputed."""
    from sungen_ray.curate.weights import read_weights
    from sungen_ray.data.labelled import parquet_inputs, read_labelled
    from sungen_ray.reweight.shard import pool_channel_margin

    metrics = read_json(out / "metrics.json")
    if "health" in metrics:
        return metrics["health"]
    pool_data = read_labelled(pool, num_labels)  # any format; idx from the file or row order
    labels = pool_data.label
    theta = read_weights(out, pool_data.idx, "theta")
    files = parquet_inputs(pool)
    channel = pool_channel_margin(files) if files else None
    lr_conf = None
    if tam_name == "minilm" and len(labels) <= LR_MAX_ROWS:  # the pool's stored features, not encoded again
        from sungen_ray.curate.baselines import lr_confidence
        from sungen_ray.features.pool import attach_pool_features

        attach_pool_features(pool)

        names = [str(k) for k in range(num_labels or int(labels.max()) + 1)]
        lr_conf = lr_confidence(pool_data.text, labels, names)
    record = health(metrics["iterations"], theta, labels, channel, lr_conf)
    write_json(out / "metrics.json", metrics | {"health": record})
    for flag in record["flags"]:
        print(f"[reweight] weight health: {flag}", flush=True)
    return record
