"""Does reweighting find injected label noise? Flip a seeded share of a gold set's training labels,
reweight, and compare (a) a TAM trained on all noisy rows, (b) on the top-weighted rows / with the
weights, (c) on the clean rows only (oracle), on a held-out split with true labels.

    python benchmarks/reweight_noise.py --gold ../shared/data/subj/all.jsonl --flip 0.3 --seeds 0 1 2
    python benchmarks/reweight_noise.py --gold ../shared/data/subj/all.jsonl --flip 0.45
    python benchmarks/reweight_noise.py --gold ../shared/data/subj/all.jsonl --flip 0.3 --from-label 0

The loop runs with the user's defaults (``ReweightConfig``), so its stopping rule decides when it
ends; (b) keeps the top ``--keep`` fraction within each label (``selection.select``, mode
``per_label_top``, as the product does), trained uniformly and, as ``select.weighted`` ships, with
the kept rows' weights scaled to mean 1 per label (``b_top_weighted``); ``b_weighted`` trains every
row with the weights as they are.

A peer, side by side (``--cleanlab``, needs ``pip install -e .[bench]``): cleanlab's label-quality
scores from cross-validated probabilities of the same TAM (``--cv-folds`` folds, each fit like the
final TAM), their ROC-AUC for clean vs flipped beside SunGen's, and the same per-label top
``--keep`` selection by that score.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from sungen_ray.config import from_dict
from sungen_ray.curate.selection import SelectConfig, select, training_weights
from sungen_ray.data.labelled import read_labelled
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.reweight.loop import Shard, run
from sungen_ray.tam import accuracy, build_encoder, build_model, predict_logits, train


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0
    ranks[order] = np.repeat(avg, counts) + 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def flip_labels(labels: np.ndarray, share: float, num_labels: int, rng, from_label: int | None):
    """Symmetric flips (to a random other label), or only rows of ``from_label`` when given."""
    candidates = np.arange(len(labels)) if from_label is None else np.flatnonzero(labels == from_label)
    flipped = rng.choice(candidates, size=int(round(share * len(candidates))), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_labels, size=len(flipped))) % num_labels
    return noisy, np.isin(np.arange(len(labels)), flipped)


def fit_and_score(cfg, enc, train_x, train_y, test_x, test_y, num_labels, epochs, weights=None, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg.tam, enc, train_x, num_labels)
    train(model, train_x, train_y, weights, cfg=cfg.tam, epochs=epochs, seed=seed)
    return accuracy(model, test_x, test_y)


def cross_validated_probs(cfg, enc, x, y, num_labels: int, folds: int, epochs: int, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities: each row predicted by a TAM that never saw it (what
    cleanlab's scores assume)."""
    fold_of = np.random.default_rng(seed + 17).permutation(len(y)) % folds
    probs = np.zeros((len(y), num_labels), dtype=np.float64)
    for k in range(folds):
        held, fit_rows = np.flatnonzero(fold_of == k), np.flatnonzero(fold_of != k)
        torch.manual_seed(seed * folds + k)
        model = build_model(cfg.tam, enc, x.subset(torch.from_numpy(fit_rows)), num_labels)
        fit_idx = torch.from_numpy(fit_rows)
        train(model, x.subset(fit_idx), y[fit_idx], cfg=cfg.tam, epochs=epochs, seed=seed)
        logits = predict_logits(model, x.subset(torch.from_numpy(held)))
        probs[held] = torch.softmax(logits.double(), 1).cpu().numpy()
    return probs


def cleanlab_scores(noisy_y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    try:
        from cleanlab.rank import get_label_quality_scores
    except ImportError as exc:
        raise SystemExit("--cleanlab needs cleanlab: pip install -e '.[bench]'") from exc
    return get_label_quality_scores(noisy_y, probs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", required=True)
    ap.add_argument("--flip", type=float, default=0.3)
    ap.add_argument("--from-label", type=int, default=None, help="flip only rows of this label")
    ap.add_argument("--train-size", type=int, default=6000)
    ap.add_argument("--tam", default="bow")
    ap.add_argument("--outer-iters", type=int, default=None, help="maximum outer iterations (default: config)")
    ap.add_argument("--keep", type=float, default=0.7, help="(b): keep this top fraction by weight within each label")
    ap.add_argument("--final-epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--outer-losses", nargs="+", default=["rce", "ce"])
    ap.add_argument("--config", type=json.loads, default={}, help="extra ReweightConfig fields as JSON")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (use 1 on a loaded machine)")
    ap.add_argument("--cleanlab", action="store_true", help="also score the rows with cleanlab (a peer)")
    ap.add_argument("--cv-folds", type=int, default=5, help="folds for cleanlab's out-of-fold probabilities")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    gold = read_labelled(args.gold, min_labels=2)
    num_labels = int(gold.label.max()) + 1
    results = [run_seed(args, gold, num_labels, seed) for seed in args.seeds]
    if args.cleanlab:
        sungen = [r[f"{args.outer_losses[0]}_auc"] for r in results]
        peer = [r["cleanlab_auc"] for r in results]
        spread = (lambda v: f" +- {np.std(v, ddof=1):.4f}") if len(results) > 1 else (lambda v: "")
        print(
            f"ROC-AUC clean vs flipped (flip {args.flip}, from_label {args.from_label}, seeds {args.seeds}): "
            f"SunGen ({args.outer_losses[0]}) {np.mean(sungen):.4f}{spread(sungen)} | cleanlab {np.mean(peer):.4f}"
            f"{spread(peer)} | SunGen - cleanlab {np.mean(sungen) - np.mean(peer):+.4f}"
        )
    if len(results) > 1:
        print(f"mean +- std over seeds {args.seeds}:")
        for key in results[0]:
            values = np.array([r[key] for r in results])
            print(
                f"  {key:14s} {values.mean():.4f} +- {values.std(ddof=1):.4f}   ({' '.join(f'{v:.4f}' for v in values)})"
            )


def run_seed(args, gold, num_labels: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(gold))
    tr, te = perm[: args.train_size], perm[args.train_size :]
    noisy_y, flipped = flip_labels(gold.label[tr], args.flip, num_labels, rng, args.from_label)
    overrides = {} if args.outer_iters is None else {"outer_iters": args.outer_iters}
    cfg = from_dict(ReweightConfig, {"tam": {"name": args.tam}, "seed": seed, **overrides, **args.config})
    enc = build_encoder(cfg.tam, [gold.text[i] for i in tr])
    x_all = enc.encode(gold.text)
    train_x, test_x = x_all.subset(torch.from_numpy(tr)), x_all.subset(torch.from_numpy(te))
    test_y = torch.from_numpy(gold.label[te])
    ny = torch.from_numpy(noisy_y)

    def fit(x, y, w=None):
        return fit_and_score(cfg, enc, x, y, test_x, test_y, num_labels, args.final_epochs, w, seed)

    acc_a = fit(train_x, ny)
    clean = torch.from_numpy(np.flatnonzero(~flipped))
    acc_c = fit(train_x.subset(clean), ny[clean])
    print(
        f"seed {seed}: flip {args.flip} from_label {args.from_label} tam {args.tam} | flipped {flipped.sum()}/{len(tr)}"
    )
    print(f"  (a) uniform on all noisy: {acc_a:.4f}   (c) clean-only oracle: {acc_c:.4f}")
    result = {"a_uniform": acc_a, "c_clean": acc_c}
    if args.cleanlab:
        clock = time.perf_counter()
        probs = cross_validated_probs(cfg, enc, train_x, ny, num_labels, args.cv_folds, args.final_epochs, seed)
        score = cleanlab_scores(noisy_y, probs)
        keep_mask = select(score, noisy_y, SelectConfig(mode="per_label_top", fraction=args.keep))
        keep = torch.from_numpy(np.flatnonzero(keep_mask))
        acc_cl = fit(train_x.subset(keep), ny[keep])
        result.update({"cleanlab_auc": roc_auc(score, ~flipped), "cleanlab_b_top": acc_cl})
        print(
            f"  cleanlab ({args.cv_folds}-fold {args.tam} probabilities, {time.perf_counter() - clock:.1f} s): AUC "
            f"{result['cleanlab_auc']:.4f} | per-label top {args.keep:.0%}: {acc_cl:.4f} | flipped share kept "
            f"{flipped[keep_mask].mean():.3f}"
        )
    for loss in args.outer_losses:
        shard = Shard(torch.from_numpy(gold.idx[tr]), ny, train_x, num_labels, enc)
        aucs = []
        clock = time.perf_counter()
        state, hist = run(
            shard,
            dataclasses.replace(cfg, outer_loss=loss),
            on_iteration=lambda state, metrics, aucs=aucs: aucs.append(roc_auc(state["theta"].numpy(), ~flipped)),
        )
        secs = time.perf_counter() - clock
        theta = state["theta"].numpy()
        auc = roc_auc(theta, ~flipped)
        keep_mask = select(theta, noisy_y, SelectConfig(mode="per_label_top", fraction=args.keep))
        keep = torch.from_numpy(np.flatnonzero(keep_mask))
        acc_top = fit(train_x.subset(keep), ny[keep])
        weights = torch.sigmoid(state["theta"])
        shipped = training_weights(weights.numpy(), noisy_y, keep_mask)
        acc_top_w = fit(train_x.subset(keep), ny[keep], torch.from_numpy(shipped).float())
        acc_w = fit(train_x, ny, weights)
        gap = acc_c - acc_a
        closed = (acc_top - acc_a) / gap if gap > 0 else float("nan")
        closed_w = (acc_w - acc_a) / gap if gap > 0 else float("nan")
        end = "stopping rule" if state["stopped"] else "iteration cap"
        curve = " ".join(f"{i + 1}:{x:.3f}" for i, x in enumerate(aucs))
        print(
            f"  outer {loss}: {len(hist)} iters ({end}; {secs / max(len(hist), 1):.2f} s/iter) AUC {auc:.4f} "
            f"(best {max(aucs):.4f} @ {int(np.argmax(aucs)) + 1}) | (b) per-label top {args.keep:.0%}: {acc_top:.4f} "
            f"(weighted per label: {acc_top_w:.4f}) | all rows weighted: {acc_w:.4f} | gap closed {closed:.2f} (top) {closed_w:.2f} (weighted)"
        )
        print(f"    AUC by iteration: {curve}")
        print(f"    flipped share: pool {flipped.mean():.3f}, kept {flipped[keep_mask].mean():.3f}")
        result.update(
            {
                f"{loss}_iters": len(hist),
                f"{loss}_auc": auc,
                f"{loss}_b_top": acc_top,
                f"{loss}_b_top_weighted": acc_top_w,
                f"{loss}_b_weighted": acc_w,
                f"{loss}_closed_top": closed,
                f"{loss}_closed_w": closed_w,
            }
        )
    return result


if __name__ == "__main__":
    main()
