"""Ways to beat training on every row, measured on bank pools in one process (issue 21).

Each study fits the final model (logistic regression on frozen MiniLM features, L-BFGS; and for
``prior-mix`` also the MLP head) and scores it on the task's gold set:

- ``prior-mix``: rank each label's rows by the channel margin, a logistic regression's own-label
  probability (fitted on every row, or cross-fitted over 3 folds), the PLM log-prob, or sums of
  their z-scores; keep the top half per label; train uniform and with sigmoid(3 z) scaled per label.
- ``relabel`` (two-label pools): instead of dropping the rows whose channel prefers the other
  label, give them that label (all such rows, or those below -q nats), keeping every row.
- ``soften``: keep every row and its label, but move the targets of a label's lower-ranked rows
  (by channel margin; cross-fitted LR confidence without one) towards uniform by eps: eps_max x
  (1 - rank), x (1 - rank)^2, or eps_max on the bottom half only; two-label pools also mix the
  target with the channel's own posterior sigmoid(margin).
- ``head-l2``: the final head's L2 on every row and on the channel filter's half, and whether
  3-fold cross-validation on the pool's own labels (no gold) picks the L2 gold prefers.
- ``free-shares`` (with ``--free POOL_DIR``, a pool generated from a label-free prompt of the task):
  the head's label shares on those texts, and gold accuracy after moving its label prior so that
  its mean probability (or its EM-estimated prior) on them becomes uniform: a gold-free check of
  where the head sits between the labels.
- ``length``: the channel margin per token, per square root of tokens, or less its length trend,
  against the summed margin (the shipped one), as the top-half ranking.
- ``near-dups``: the channel half with near-duplicates skipped (MiniLM cosine above t), and every
  row with near-duplicates removed: whether redundancy is what halving costs on large pools.
- ``content-free``: each label prompt's channel score of content-free texts (contextual
  calibration), and each label's mean margin with that offset removed: a class-level signal.
- ``seed-ensemble``: the shipped weights averaged over reweighting seeds against each seed's own.
- ``label-push``: whether the bilevel step itself moves the labels' level: reweight with the
  alignments centred over the pool (``center: global``) for a fixed number of iterations and print
  each label's mean theta_T - theta_0.

    python benchmarks/filter_studies.py prior-mix --bank demo-sst2-1000 agnews-10000 --seeds 0
    python benchmarks/filter_studies.py relabel --bank sst2-20000 imdb-6000
    python benchmarks/filter_studies.py soften --bank sst2-20000 agnews-10000 imdb-6000
    python benchmarks/filter_studies.py head-l2 --bank sst2-20000 agnews-10000
    python benchmarks/filter_studies.py free-shares --bank agnews-10000 --free runs/free-agnews
    python benchmarks/filter_studies.py label-push --bank agnews-10000 imdb-6000 sst2-20000 --iters 10
    python benchmarks/filter_studies.py length --bank sst2-20000 agnews-10000
    python benchmarks/filter_studies.py near-dups --bank sst2-20000 agnews-10000
    python benchmarks/filter_studies.py seed-ensemble --bank demo-sst2-1000 --seeds 0 1 2
    python benchmarks/filter_studies.py content-free --bank sst2-20000 agnews-10000 imdb-6000
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from bank import bank_pool, default_gold

from sungen_ray.config import from_dict
from sungen_ray.curate.baselines import LR_TAM, lr_confidence, pool_score_columns
from sungen_ray.curate.selection import SelectConfig, select, training_weights
from sungen_ray.curate.weights import read_weights
from sungen_ray.data.labelled import parquet_inputs, read_labelled, read_table
from sungen_ray.features.pool import attach_pool_features, read_pool_features
from sungen_ray.plm.channel import body_ids
from sungen_ray.plm.prepare import default_model_dir
from sungen_ray.reweight.api import reweight_pool
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.tam import build_encoder
from sungen_ray.tam import final as final_model
from sungen_ray.tam.registry import build_model
from sungen_ray.tam.train import fit_full_batch
from sungen_ray.tasks.spec import load_task

L2_GRID = (0.03, 0.01, 0.003, 0.001, 0.0003)


class Pool:
    """A bank pool with its features attached, its score columns, and a gold-scored fit."""

    def __init__(self, name: str):
        data_dir, task = bank_pool(name)
        self.name, self.dir, self.spec, self.gold = name, data_dir, load_task(task), default_gold(task)
        pool = read_labelled(data_dir, num_labels=self.spec.num_labels)
        attach_pool_features(data_dir)
        self.texts, self.labels = list(pool.text), np.asarray(pool.label, np.int64)
        scores = pool_score_columns(read_table(data_dir)).reindex(np.asarray(pool.idx))
        self.idx = np.asarray(pool.idx)
        self.margin = scores["channel_margin"].to_numpy() if "channel_margin" in scores else None
        self.logprob = scores["logprob"].to_numpy() if "logprob" in scores else None
        self.all = np.ones(len(self.texts), dtype=bool)

    def fit(self, keep, labels=None, weights=None, l2=0.01, head="lr", seed=0):
        labels = self.labels if labels is None else labels
        tam = {**LR_TAM, "l2": l2} if head == "lr" else {"name": "minilm"}
        cfg = from_dict(final_model.FinalConfig, {"tam": tam, "device": "cpu", "seed": seed}, "final")
        rows = np.flatnonzero(keep)
        w = None if weights is None else weights[rows]
        return final_model.fit([self.texts[i] for i in rows], labels[rows], self.spec.label_names, cfg, w)

    def accuracy(self, keep, **kw) -> float:
        return round(final_model.evaluate(self.fit(keep, **kw), self.gold)["accuracy"], 4)

    def top_half(self, score) -> np.ndarray:
        return select(score, self.labels, SelectConfig(mode="per_label_top", fraction=0.5))

    def shipped_weights(self, weights, keep) -> np.ndarray:
        """Full-length fit weights: the kept rows' ``weights`` scaled to mean 1 per label, 0 elsewhere."""
        out = np.zeros(len(self.texts))
        out[keep] = training_weights(np.asarray(weights, np.float64), self.labels, keep)
        return out

    def prior_weights(self, score, keep) -> np.ndarray:
        """The weights a ranking's prior would give the kept rows (sigmoid(3 z)), scaled per label."""
        return self.shipped_weights(1 / (1 + np.exp(-3 * z(score))), keep)

    def features(self) -> torch.Tensor:
        """The stored MiniLM vectors of the pool's rows, unit length, in the pool's row order."""
        x = read_pool_features(parquet_inputs(self.dir), np.ones(len(self.texts), dtype=bool))
        return torch.nn.functional.normalize(x.float(), dim=1)

    def cross_fitted_confidence(self, folds: int = 3) -> np.ndarray:
        fold = np.random.default_rng(0).integers(0, folds, len(self.texts))
        conf = np.zeros(len(self.texts))
        for k in range(folds):
            test = fold == k
            probs = self.fit(~test).predict([t for t, x in zip(self.texts, test) if x])
            conf[test] = probs[np.arange(int(test.sum())), self.labels[test]]
        return conf


def z(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x - x.mean()) / (x.std() or 1.0)


def logit(p) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def prior_mix(pool: Pool, args) -> dict:
    rankings = {
        "lr": z(logit(lr_confidence(pool.texts, pool.labels, pool.spec.label_names))),
        "lr_cf": z(logit(pool.cross_fitted_confidence())),
    }
    if pool.logprob is not None:
        rankings["plm"] = z(pool.logprob)
    if pool.margin is not None:
        rankings["channel"] = z(pool.margin)
        rankings["channel+lr"] = z(rankings["channel"] + rankings["lr"])
        rankings["channel+lr_cf"] = z(rankings["channel"] + rankings["lr_cf"])
        if "plm" in rankings:
            rankings["channel+lr_cf+plm"] = z(rankings["channel"] + rankings["lr_cf"] + rankings["plm"])
    out = {f"all/{head}": mean_over(pool, pool.all, None, head, args.seeds) for head in ("lr", "mlp")}
    for name, score in rankings.items():
        half = pool.top_half(score)
        weights = pool.prior_weights(score, half)
        for head in ("lr", "mlp"):
            out[f"{name}/{head}"] = mean_over(pool, half, None, head, args.seeds)
            out[f"{name}/{head}_weighted"] = mean_over(pool, half, weights, head, args.seeds)
        print(pool.name, name, {k: v for k, v in out.items() if k.startswith(name + "/")}, flush=True)
    return out


def mean_over(pool: Pool, keep, weights, head: str, seeds) -> float:
    """The LR head is deterministic (L-BFGS from zero): one fit; the MLP head: the mean over seeds."""
    runs = [pool.accuracy(keep, weights=weights, head=head, seed=s) for s in (seeds if head == "mlp" else [0])]
    return round(float(np.mean(runs)), 4)


def relabel(pool: Pool, args) -> dict:
    if pool.margin is None or pool.spec.num_labels != 2:
        raise SystemExit(f"relabel: {pool.name} is not a two-label pool with a channel margin")
    m, y = pool.margin, pool.labels
    out = {
        "all": pool.accuracy(pool.all),
        "channel_half": pool.accuracy(pool.top_half(m)),
        "channel_consistent": pool.accuracy(m > 0),
        "share_preferring_other": round(float((m < 0).mean()), 4),
    }
    for q in (0.0, 0.5, 1.0, 2.0):
        flipped = np.where(m < -q, 1 - y, y)
        out[f"relabel_below_-{q}"] = pool.accuracy(pool.all, labels=flipped)
        if q > 0:  # the rows between -q and 0 dropped, the rest relabelled
            out[f"relabel_below_-{q}_drop_between"] = pool.accuracy((m >= 0) | (m < -q), labels=flipped)
    return out


def soft_target_accuracy(pool: Pool, targets: np.ndarray, l2: float = 0.01) -> float:
    """The LR head fitted to (n, K) target distributions; one-hot targets give the hard fit."""
    cfg = from_dict(final_model.FinalConfig, {"tam": {**LR_TAM, "l2": l2}, "device": "cpu"}, "final")
    encoder = build_encoder(cfg.tam, pool.texts)
    data = encoder.encode(pool.texts)
    model = build_model(cfg.tam, encoder, data, pool.spec.num_labels)
    fit_full_batch(model, data, torch.as_tensor(targets, dtype=torch.float32), None, l2=l2)
    trained = final_model.TrainedModel(model=model, encoder=encoder, tam=cfg.tam, label_names=pool.spec.label_names)
    return round(final_model.evaluate(trained, pool.gold)["accuracy"], 4)


def rank_within_label(score: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row's rank in its label, (0, 1], 1 the highest score."""
    rank = np.zeros(len(score))
    for k in np.unique(labels):
        rows = labels == k
        rank[rows] = (np.argsort(np.argsort(score[rows])) + 1) / rows.sum()
    return rank


def soften(pool: Pool, args) -> dict:
    k, y = pool.spec.num_labels, pool.labels
    onehot = np.eye(k)[y]
    score = pool.margin if pool.margin is not None else pool.cross_fitted_confidence()
    rank = rank_within_label(score, y)
    out = {"hard": soft_target_accuracy(pool, onehot)}
    for eps_max in (0.5, 1.0):
        shapes = {"linear": 1 - rank, "squared": (1 - rank) ** 2, "bottom_half": (rank <= 0.5).astype(float)}
        for shape, eps in shapes.items():
            eps = eps_max * eps
            out[f"{shape}_{eps_max}"] = soft_target_accuracy(pool, (1 - eps)[:, None] * onehot + (eps / k)[:, None])
    if k == 2 and pool.margin is not None:
        own = 1 / (1 + np.exp(-pool.margin))
        posterior = np.where(onehot > 0, own[:, None], 1 - own[:, None])
        for a in (0.25, 0.5):
            out[f"channel_posterior_{a}"] = soft_target_accuracy(pool, (1 - a) * onehot + a * posterior)
    return out


def head_l2(pool: Pool, args) -> dict:
    sets = {"all": pool.all}
    if pool.margin is not None:
        sets["channel_half"] = pool.top_half(pool.margin)
    out = {}
    for name, keep in sets.items():
        rows = np.flatnonzero(keep)
        fold = np.random.default_rng(0).integers(0, 3, len(rows))
        table = {}
        for l2 in L2_GRID:
            hits = []
            for k in range(3):
                train, test = np.zeros(len(keep), bool), rows[fold == k]
                train[rows[fold != k]] = True
                pred = pool.fit(train, l2=l2).predict([pool.texts[i] for i in test]).argmax(1)
                hits.append(float((pred == pool.labels[test]).mean()))
            table[l2] = {"cv": round(float(np.mean(hits)), 4), "gold": pool.accuracy(keep, l2=l2)}
        picked = max(table, key=lambda l2: table[l2]["cv"])
        best = max(table, key=lambda l2: table[l2]["gold"])
        out[name] = {"by_l2": table, "cv_picks": picked, "gold_best": best}
        print(pool.name, name, json.dumps(out[name]), flush=True)
    return out


def em_prior(probs: np.ndarray, iters: int = 50) -> np.ndarray:
    """The label prior of unlabelled rows under a model trained at a uniform prior (Saerens et al.)."""
    prior = np.full(probs.shape[1], 1 / probs.shape[1])
    for _ in range(iters):
        q = probs * prior
        prior = (q / q.sum(1, keepdims=True)).mean(0)
    return prior


def free_shares(pool: Pool, args) -> dict:
    if not args.free:
        raise SystemExit("free-shares: pass --free, a pool generated from a label-free prompt")
    free = list(read_labelled(args.free).text)
    gold = final_model.read_gold(pool.gold, pool.spec.label_names)
    truth, k = np.asarray(gold.label), pool.spec.num_labels
    sets = {"all": pool.all}
    if pool.margin is not None:
        sets["channel_half"] = pool.top_half(pool.margin)
    out = {"free_texts": len(free)}
    for name, keep in sets.items():
        model = pool.fit(keep)
        on_gold, on_free = model.predict(list(gold.text)), model.predict(free)
        row = {"shares_on_free": np.round(np.bincount(on_free.argmax(1), minlength=k) / len(free), 3).tolist()}
        for fix, scale in (
            ("none", np.ones(k)),
            ("mean_prob", 1 / on_free.mean(0)),
            ("em_prior", 1 / em_prior(on_free)),
        ):
            pred = (on_gold * scale).argmax(1)
            row[fix] = {
                "accuracy": round(float((pred == truth).mean()), 4),
                "shares_on_gold": np.round(np.bincount(pred, minlength=k) / len(truth), 3).tolist(),
            }
        out[name] = row
    return out


def label_push(pool: Pool, args) -> dict:
    cfg = from_dict(
        ReweightConfig,
        {"seed": 0, "tam": {"name": "minilm"}, "center": "global", "outer_iters": args.iters, "stop_patience": 0}
        | json.loads(args.cfg),
        "reweight",
    )
    out_dir = reweight_pool(
        pool.dir,
        Path(args.work) / pool.name / f"push-{args.iters}-{hashlib.sha256(args.cfg.encode()).hexdigest()[:8]}",
        cfg,
    )
    theta = read_weights(out_dir, pool.idx, "theta")
    m = pool.margin if pool.margin is not None else np.zeros(len(theta))
    start = cfg.prior_scale * z(m) if cfg.prior_norm == "pool" else np.zeros(len(theta))
    if cfg.prior_norm == "label":
        for k in range(pool.spec.num_labels):
            start[pool.labels == k] = cfg.prior_scale * z(m[pool.labels == k])
    moved = theta - start
    return {
        "theta_move_by_label": {
            n: round(float(moved[pool.labels == k].mean()), 3) for k, n in enumerate(pool.spec.label_names)
        },
        "theta_move_sd": round(float(moved.std()), 3),
    }


def length(pool: Pool, args) -> dict:
    """The channel margin is a sum over the text's tokens, so it grows with length; does a
    per-token (or per-sqrt-token) margin, or the margin's residual after its length trend, rank better?"""
    if pool.margin is None:
        raise SystemExit(f"length: {pool.name} has no channel margin")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model or str(default_model_dir()))
    n = np.array([len(body_ids(t, tok)) for t in pool.texts], np.float64)
    m = pool.margin
    trend = np.polyval(np.polyfit(np.log(n), m, 1), np.log(n))
    out = {
        "all": pool.accuracy(pool.all),
        "spearman_margin_tokens": round(
            float(np.corrcoef(np.argsort(np.argsort(m)), np.argsort(np.argsort(n)))[0, 1]), 3
        ),
        "mean_tokens": round(float(n.mean()), 1),
    }
    for name, score in {
        "sum": m,
        "per_sqrt_token": m / np.sqrt(n),
        "per_token": m / n,
        "length_residual": m - trend,
    }.items():
        half = pool.top_half(score)
        out[name] = {
            "uniform": pool.accuracy(half),
            "weighted": pool.accuracy(half, weights=pool.prior_weights(score, half)),
            "kept_mean_tokens": round(float(n[half].mean()), 1),
        }
    return out


def suppress_near_duplicates(x: torch.Tensor, score, labels, threshold: float, fraction=0.5, fill=True) -> np.ndarray:
    """Each label's top ``fraction`` by score, skipping a row whose cosine with a row already kept
    exceeds ``threshold`` (then, with ``fill``, filling up with the skipped rows, best first)."""
    keep = np.zeros(len(score), dtype=bool)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        rows = rows[np.argsort(-score[rows], kind="stable")]
        xk, want = x[rows], int(round(fraction * len(rows)))
        closest, chosen = torch.full((len(rows),), -1.0), []
        for j in range(len(rows)):
            if len(chosen) == want:
                break
            if closest[j] <= threshold:
                chosen.append(j)
                closest = torch.maximum(closest, xk @ xk[j])
        skipped = np.setdiff1d(np.arange(len(rows)), chosen)[: want - len(chosen) if fill else 0]
        keep[rows[np.concatenate([chosen, skipped]).astype(int)]] = True
    return keep


def near_dups(pool: Pool, args) -> dict:
    """Does halving lose to every row because the kept half is redundant? The channel half with
    near-duplicates (MiniLM cosine above t) skipped, and every row with them removed."""
    if pool.margin is None:
        raise SystemExit(f"near-dups: {pool.name} has no channel margin")
    x, m = pool.features(), pool.margin
    half = pool.top_half(m)
    out = {"all": pool.accuracy(pool.all), "channel_half": pool.accuracy(half)}
    for t in (0.9, 0.8, 0.7):
        keep = suppress_near_duplicates(x, m, pool.labels, t)
        out[f"diverse_half_{t}"] = {
            "uniform": pool.accuracy(keep),
            "weighted": pool.accuracy(keep, weights=pool.prior_weights(m, keep)),
            "same_rows_as_channel_half": round(float((keep & half).sum() / half.sum()), 3),
        }
    for t in (0.95, 0.9):
        keep = suppress_near_duplicates(x, -np.arange(len(m), dtype=float), pool.labels, t, fraction=1.0, fill=False)
        out[f"dedup_{t}"] = {"rows": int(keep.sum()), "accuracy": pool.accuracy(keep)}
    return out


def seed_ensemble(pool: Pool, args) -> dict:
    """The shipped reweighting's weights averaged over seeds against each seed's own (the shipped
    use: top half per label, trained with the weights scaled per label)."""

    def sungen(w) -> float:
        half = pool.top_half(w)
        return pool.accuracy(half, weights=pool.shipped_weights(w, half))

    runs, tag = [], hashlib.sha256(args.cfg.encode()).hexdigest()[:8]  # a finished run is reused: key it by --cfg
    for seed in args.seeds:
        cfg = from_dict(ReweightConfig, {"seed": seed, "tam": {"name": "minilm"}} | json.loads(args.cfg), "reweight")
        out_dir = Path(args.work) / pool.name / f"ensemble-{tag}-seed{seed}"
        runs.append(read_weights(reweight_pool(pool.dir, out_dir, cfg), pool.idx))
    each = [sungen(w) for w in runs]
    return {
        "each_seed": each,
        "mean_of_seeds": round(float(np.mean(each)), 4),
        "averaged_weights": sungen(np.mean(runs, axis=0)),
        "channel_half": pool.accuracy(pool.top_half(pool.margin)) if pool.margin is not None else None,
    }


CONTENT_FREE = ("", "N/A", "[MASK]", "...", "it", "This is a text.", "The")


def content_free(pool: Pool, args) -> dict:
    """A class-level signal from contextual calibration (Zhao et al., 2021): each label prompt's
    channel score of content-free texts, centred over labels. A prompt that likes any text lifts
    its own rows' margins as a block; the calibrated per-label mean margin removes that."""
    from sungen_ray.plm.channel import channel_scores

    cf = channel_scores(list(CONTENT_FREE), pool.spec, args.model or str(default_model_dir())).scores
    offset = (cf - cf.mean(axis=1, keepdims=True)).mean(axis=0)
    names, y = pool.spec.label_names, pool.labels
    out = {"offset_by_label": {n: round(float(o), 3) for n, o in zip(names, offset)}}
    if pool.margin is not None:
        out["mean_margin_by_label"] = {n: round(float(pool.margin[y == k].mean()), 3) for k, n in enumerate(names)}
        if pool.spec.num_labels == 2:  # the rival is the other label: the calibrated margin is exact
            shift = offset[y] - offset[1 - y]
            out["calibrated_mean_margin_by_label"] = {
                n: round(float((pool.margin - shift)[y == k].mean()), 3) for k, n in enumerate(names)
            }
    return out


STUDIES = {
    "prior-mix": prior_mix,
    "relabel": relabel,
    "soften": soften,
    "head-l2": head_l2,
    "free-shares": free_shares,
    "label-push": label_push,
    "length": length,
    "near-dups": near_dups,
    "seed-ensemble": seed_ensemble,
    "content-free": content_free,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", choices=sorted(STUDIES))
    ap.add_argument("--bank", nargs="+", required=True, help="pools of the committed bank")
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="MLP head seeds (prior-mix), reweighting seeds (seed-ensemble)",
    )
    ap.add_argument("--iters", type=int, default=10, help="outer iterations (label-push)")
    ap.add_argument("--free", help="a pool of label-free generated texts (free-shares)")
    ap.add_argument("--cfg", default="{}", help="reweighting overrides, JSON (label-push, seed-ensemble)")
    ap.add_argument("--model", default=None, help="the generator (length, content-free; default: the embedded model)")
    ap.add_argument("--work", default="runs/filter-studies")
    ap.add_argument("--out", default="runs/filter-studies/results.jsonl")
    args = ap.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for name in args.bank:
        result = {"study": args.study, "pool": name, **STUDIES[args.study](Pool(name), args)}
        print(json.dumps(result), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
