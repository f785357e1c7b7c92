"""The run report: what was generated, what the weights learned, what was kept, and whether
cleaning helped (SunGen vs the baselines), as report.json, report.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sungen_ray.curate.weights import ranked_by_label
from sungen_ray.data import atomic
from sungen_ray.data.labelled import read_table
from sungen_ray.pipeline.layout import RunLayout
from sungen_ray.pipeline.stages import read_stage
from sungen_ray.plm.identity import display_name

EXAMPLES = 5


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def weight_figure(rounds: list[dict], label_names: list[str]):
    """One panel per (round, label): a bar histogram of the learned weights, the selection threshold
    as a dashed line and the share kept written beside it. ``rounds[i]`` holds ``round``, and
    ``weight``, ``label``, ``keep`` arrays of that round's selection."""
    plt = _pyplot()
    n_rows, n_cols = len(rounds), len(label_names)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 2.8 * n_rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, rnd in zip(axes, rounds):
        weight, label, keep = (np.asarray(rnd[k]) for k in ("weight", "label", "keep"))
        lo, hi = (float(weight.min()), float(weight.max())) if len(weight) else (0.0, 1.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.01, hi + 0.01
        edges = np.linspace(lo, hi, 31)  # the round's own range: weights often sit in a narrow band
        for k, (ax, name) in enumerate(zip(row, label_names)):
            w, kept = weight[label == k], keep[label == k]
            ax.hist(w[~kept], bins=edges, color="lightgray", edgecolor="gray", linewidth=0.4, label="dropped")
            ax.hist(w[kept], bins=edges, color=colours[k % len(colours)], alpha=0.85, label="kept")
            share = kept.mean() if len(kept) else 0.0
            ax.text(
                0.02,
                0.95,
                f"kept {share:.0%} ({int(kept.sum())}/{len(kept)})",
                transform=ax.transAxes,
                va="top",
                ha="left",
                fontsize=9,
                fontweight="bold",
            )
            if kept.any() and (~kept).any():
                threshold = float(w[kept].min())
                ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label="selection threshold")
                ax.text(0.02, 0.82, f"threshold {threshold:.3f}", transform=ax.transAxes, va="top", fontsize=8)
            ax.set_title(f"round {rnd['round']}, {name}", fontsize=10)
            ax.set_xlabel("learned weight")
            ax.set_ylabel("samples")
            ax.margins(y=0.25)  # headroom for the text above the tallest bar
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=len(names), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (2.8 * n_rows)))
    return fig


def accuracy_figure(variants: dict[str, list[dict]]):
    """Gold accuracy per variant: the mean as a bar, every seed as a dot, the spread (std) as an
    error bar, and the train size under each bar. ``variants[name]`` lists per-seed results."""
    plt = _pyplot()
    names = [k for k, runs in variants.items() if any("accuracy" in r for r in runs)]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.4, 3.6))
    everything = []
    for i, name in enumerate(names):
        accs = np.array([r["accuracy"] for r in variants[name] if "accuracy" in r])
        everything.extend(accs)
        colour = "tab:green" if name == "sungen" else "tab:blue"
        # a marker, not a bar: the axis is zoomed to the accuracies, and a bar's length would mislead
        ax.errorbar(
            i,
            accs.mean(),
            yerr=accs.std(),
            fmt="D",
            markersize=8,
            capsize=8,
            color=colour,
            label="mean ± std over seeds" if i == 0 else None,
        )
        jitter = np.linspace(-0.15, 0.15, len(accs)) if len(accs) > 1 else np.zeros(1)
        ax.scatter(i + 0.25 + jitter * 0.5, accs, color="black", s=12, zorder=3, label="one seed" if i == 0 else None)
        ax.text(i - 0.12, accs.mean(), f"{accs.mean():.3f}", ha="right", va="center", fontsize=8)
    sizes = [f"{name}\nn={variants[name][0].get('train_size', '?')}" for name in names]
    ax.set_xticks(range(len(names)), sizes, fontsize=8)
    lo, hi = min(everything), max(everything)
    ax.set_ylim(max(0.0, lo - 0.05), min(1.0, hi + 0.03))
    seeds = max(len(variants[n]) for n in names)
    ax.set_ylabel("gold accuracy")
    ax.set_xlim(-0.7, len(names) - 0.3)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"SunGen vs baselines on gold ({seeds} seeds each)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> None:
    if fig is None:
        return
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def write_report(cfg, spec, layout: RunLayout, total_seconds: float) -> dict:
    rounds = []
    for r in range(len(cfg.rounds)):
        gen = read_stage(layout.pool(r))
        rw = read_stage(layout.reweight(r))
        sel = read_stage(layout.select(r))
        metrics = json.loads((layout.reweight(r) / "metrics.json").read_text())
        last = metrics["iterations"][-1] if metrics["iterations"] else None
        rounds.append(
            {
                "round": r,
                "generate": gen["result"] if gen else None,
                "reweight": rw["result"] if rw else None,
                "select": sel["result"] if sel else None,
                "weight_hist": last["weights_by_label"] if last else [],
                "seconds": {
                    "generate": gen and gen["seconds"],
                    "reweight": rw and rw["seconds"],
                    "select": sel and sel["seconds"],
                },
            }
        )
    final = read_stage(layout.final)
    table = read_table(layout.selected(len(cfg.rounds) - 1)).to_pandas()
    examples = ranked_by_label(
        table.text.tolist(), table.label.to_numpy(), table.weight.to_numpy(), spec.label_names, EXAMPLES
    )
    report = {
        "name": cfg.name,
        "task": spec.name,
        "rounds": rounds,
        "final": final["result"] if final else None,
        "final_seconds": final and final["seconds"],
        "examples": examples,
        "total_seconds": round(total_seconds, 1),
    }
    report["features"] = encoding_counts(cfg, layout, rounds, report["final"])
    # replica start-ups over the whole run: one per replica when every round reused the first's
    report["engine_starts"] = sum((r["generate"] or {}).get("engine_starts") or 0 for r in rounds)
    manifest = layout.pool(0) / "manifest.json"
    report["model"] = json.loads(manifest.read_text()).get("model") if manifest.is_file() else None
    report["summary"] = summary_lines(report, spec)
    layout.plots.mkdir(exist_ok=True)
    selections = []
    for r in range(len(cfg.rounds)):
        sel_table = read_table(layout.selected(r))
        selections.append({"round": r, **{k: sel_table.column(k).to_numpy() for k in ("weight", "label", "keep")}})
    _save(weight_figure(selections, spec.label_names), layout.plots / "weights_by_label.png")
    per_seed = layout.final / "final.json"
    if final and per_seed.is_file():
        _save(accuracy_figure(json.loads(per_seed.read_text())["variants"]), layout.plots / "accuracy.png")
    atomic.write_json(layout.report_json, report)
    tmp = layout.out / ".report.md.tmp"
    tmp.write_text(_markdown(report, spec))
    tmp.replace(layout.report_md)
    return report


def encoding_counts(cfg, layout: RunLayout, rounds: list[dict], final: dict | None) -> dict:
    """How many texts the run ran through frozen MiniLM: ``texts_encoded`` is persisted in the
    pools' feature stores by whichever process encoded them (killed and resumed drivers, Ray Data
    actors), so it equals ``stored_rows`` when every pool text was encoded exactly once;
    ``outside_store`` is what stages encoded besides (gold texts), as their stage records say."""
    from sungen_ray.features.pool import store_counts

    stores = [store_counts(layout.pool_data(r)) for r in range(len(cfg.rounds)) if layout.pool_data(r).is_dir()]
    stages = [(r["reweight"] or {}).get("features") for r in rounds] + [(final or {}).get("features")]
    return {
        "stored_rows": sum(s["rows"] for s in stores),
        "texts_encoded": sum(s["texts_encoded"] for s in stores),
        "outside_store": sum((f or {}).get("outside_store", 0) for f in stages),
    }


def summary_lines(rep: dict, spec) -> list[str]:
    """Three lines: what was generated, what was kept, and how much cleaning helped against the
    best baseline (or why that was not measured)."""
    gens = [r["generate"] or {} for r in rep["rounds"]]
    kept = sum(g.get("kept") or 0 for g in gens)
    prompts = sum(g.get("prompts_sent") or 0 for g in gens)
    too_short = sum((g.get("dropped") or {}).get("too_short", 0) for g in gens)
    dupes = sum((g.get("dropped") or {}).get("duplicate", 0) for g in gens)
    gen_s = sum(r["seconds"]["generate"] or 0 for r in rep["rounds"])
    model = display_name(rep.get("model"))
    lines = [
        f"**Generated** {kept} {spec.name} samples with {model} in {len(gens)} round(s) "
        f"({prompts} prompts; {too_short} too short, {dupes} duplicates dropped; {gen_s:.0f} s)."
    ]
    sel = rep["rounds"][-1]["select"] or {}
    if sel:
        shares = ", ".join(f"{k} {v['share']:.2f}" for k, v in (sel.get("label_shares") or {}).items())
        lines.append(
            f"**Kept** {sel['kept']} of {sel['pool']} ({sel['kept_fraction']:.0%}) by learned weight; "
            f"label shares {shares}."
        )
    flags = [f for r in rep["rounds"] for f in (((r["reweight"] or {}).get("health") or {}).get("flags") or [])]
    if flags:
        lines.append(f"**Weight health**: {flags[-1]}.")
    final = rep.get("final") or {}
    summary = final.get("summary") or {}
    sungen = summary.get("sungen") or {}
    baselines = {k: v for k, v in summary.items() if k != "sungen" and v.get("accuracy_mean") is not None}
    if sungen.get("accuracy_mean") is not None and baselines:
        best, b = max(baselines.items(), key=lambda kv: kv[1]["accuracy_mean"])
        delta = 100 * (sungen["accuracy_mean"] - b["accuracy_mean"])
        verdict = "helped" if delta > 0 else "did not help"
        lines.append(
            f"**Cleaning {verdict}**: SunGen {sungen['accuracy_mean']:.4f} ± {sungen['accuracy_std']:.4f} vs the best "
            f"baseline, {best}, {b['accuracy_mean']:.4f} ± {b['accuracy_std']:.4f} ({delta:+.1f} points on gold)."
        )
    else:
        lines.append("**Cleaning**: not measured (no gold file, or no baseline to compare with).")
    return lines


def health_lines(rep: dict) -> list[str]:
    """The weights' health per round (no gold needed): saturation, stopping, rank agreement."""

    def fmt(x):
        return "n/a" if x is None else f"{x:+.2f}"

    lines = ["## Weight health (no gold needed)", ""]
    lines += [
        "| round | saturated weights | stopping rule | PLM channel prior | rho vs channel margin | rho vs LR confidence |",
        "|---|---|---|---|---|---|",
    ]
    flags = []
    for r in rep["rounds"]:
        h = (r["reweight"] or {}).get("health")
        if not h:
            continue
        stop = f"fired at {h['stop_iteration']}" if h["stopped_early"] else "did not fire"
        lines.append(
            f"| {r['round']} | {h['saturated_share']:.0%} | {stop} | {'used' if h.get('used_prior') else 'none'} | "
            f"{fmt(h['rho_channel'])} | {fmt(h['rho_confidence_lr'])} |"
        )
        flags += [f"- **round {r['round']}**: {f}" for f in h["flags"]]
    return lines + [""] + (flags + [""] if flags else [])


def _markdown(rep: dict, spec) -> str:
    lines = [f"# sungen-ray report: {rep['name']} ({rep['task']})", ""]
    lines += [f"{line}  " for line in rep["summary"]] + [""]
    final = rep["final"]
    if final:
        lines += ["## Does cleaning help?", ""]
        if final.get("gold"):
            lines += [f"Gold set: `{final['gold']}`", ""]
        if final.get("note"):
            lines += [f"_{final['note']}_", ""]
        lines += ["| variant | train size | accuracy (mean ± std over seeds) | macro-F1 |", "|---|---|---|---|"]
        for name, v in final["summary"].items():
            acc = "n/a" if v["accuracy_mean"] is None else f"{v['accuracy_mean']:.4f} ± {v['accuracy_std']:.4f}"
            f1 = "n/a" if v["macro_f1_mean"] is None else f"{v['macro_f1_mean']:.4f}"
            lines.append(f"| {name} | {v['train_size']} | {acc} | {f1} |")
        lines += ["", "![accuracy](plots/accuracy.png)", ""]
    lines += ["## Rounds", ""]
    lines += [
        "| round | generated (kept/requested) | dropped | gen tok/s | reweight iters | kept after selection | label shares kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rep["rounds"]:
        g, w, s = r["generate"] or {}, r["reweight"] or {}, r["select"] or {}
        dropped = ", ".join(f"{k} {v}" for k, v in (g.get("dropped") or {}).items() if v)
        shares = ", ".join(f"{k} {v['share']:.2f}" for k, v in (s.get("label_shares") or {}).items())
        lines.append(
            f"| {r['round']} | {g.get('kept')}/{g.get('requested')} | {dropped or '-'} | {g.get('tokens_per_s')} | "
            f"{w.get('iterations')} | {s.get('kept')}/{s.get('pool')} | {shares} |"
        )
    lines += ["", "![weights](plots/weights_by_label.png)", ""]
    lines += health_lines(rep)
    lines += ["## Time per stage (s)", ""]
    lines += ["| round | generate | reweight | select |", "|---|---|---|---|"]
    for r in rep["rounds"]:
        sec = r["seconds"]
        lines.append(f"| {r['round']} | {sec['generate']} | {sec['reweight']} | {sec['select']} |")
    lines += ["", f"Final training + evaluation: {rep['final_seconds']} s. Whole run: {rep['total_seconds']} s.", ""]
    lines += ["## Highest- and lowest-weighted samples (last round)", ""]
    for name, ex in rep["examples"].items():
        lines += [f"### {name}", "", "Highest:"]
        lines += [f"- ({w:.3f}) {t}" for w, t in ex["highest"]]
        lines += ["", "Lowest:"]
        lines += [f"- ({w:.3f}) {t}" for w, t in ex["lowest"]]
        lines.append("")
    return "\n".join(lines) + "\n"
