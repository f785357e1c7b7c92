"""The report's two plots, drawn from synthetic selections: files that exist and hold a real image,
the selection threshold and the kept share on every weight panel, every variant and seed on the
accuracy plot."""

from __future__ import annotations

import numpy as np

from sungen_ray.curate.selection import SelectConfig, select
from sungen_ray.pipeline.report import _save, accuracy_figure, weight_figure


def _is_real_image(path, min_bytes=8_000):
    import matplotlib.image as mpimg

    assert path.stat().st_size > min_bytes
    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 300
    # not blank: many distinct colours
    assert len(np.unique(img.reshape(-1, img.shape[-1]).round(2), axis=0)) > 20


def test_weight_plot_marks_threshold_and_kept_share_per_label(tmp_path):
    rng = np.random.default_rng(0)
    rounds = []
    for r in range(2):
        label = np.repeat([0, 1], 500)
        weight = np.clip(rng.normal(0.5 + 0.05 * label, 0.08), 0, 1)
        keep = select(weight, label, SelectConfig(mode="per_label_top", fraction=0.7))
        rounds.append({"round": r, "weight": weight, "label": label, "keep": keep})
    fig = weight_figure(rounds, ["negative", "positive"])
    axes = fig.axes
    assert len(axes) == 4
    for ax, (r, k) in zip(axes, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        w, keep = rounds[r]["weight"][rounds[r]["label"] == k], rounds[r]["keep"][rounds[r]["label"] == k]
        thresholds = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert thresholds == [w[keep].min()]
        texts = [t.get_text() for t in ax.texts]
        assert f"kept 70% ({keep.sum()}/500)" in texts
        assert len(ax.patches) == 60  # 30 bars for the dropped, 30 for the kept samples
    _save(fig, tmp_path / "weights.png")
    _is_real_image(tmp_path / "weights.png")


def test_accuracy_plot_shows_every_variant_seed_spread_and_train_size(tmp_path):
    variants = {
        "sungen": [{"seed": s, "accuracy": a, "train_size": 700} for s, a in enumerate([0.75, 0.74, 0.76])],
        "zerogen": [{"seed": s, "accuracy": a, "train_size": 1000} for s, a in enumerate([0.71, 0.70, 0.72])],
        "confidence_tam": [{"seed": s, "accuracy": a, "train_size": 700} for s, a in enumerate([0.73, 0.74, 0.745])],
    }
    fig = accuracy_figure(variants)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["sungen\nn=700", "zerogen\nn=1000", "confidence_tam\nn=700"]
    dots = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if len(c.get_offsets()) == 3])
    assert sorted(dots) == sorted(a["accuracy"] for runs in variants.values() for a in runs)
    means = [line.get_ydata()[0] for line in ax.get_lines() if line.get_marker() == "D"]
    np.testing.assert_allclose(means, [np.mean([r["accuracy"] for r in v]) for v in variants.values()])
    _save(fig, tmp_path / "accuracy.png")
    _is_real_image(tmp_path / "accuracy.png")
