"""The run report: what was generated, what the weights learned, what was kept, and whether
cleaning helped (SunGen vs the baselines), as report.json, report.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sungen_ray.data import atomic
from sungen_ray.data.labelled import read_table
from sungen_ray.pipeline.layout import RunLayout
from sungen_ray.pipeline.stages import read_stage

EXAMPLES = 5


def _weight_plot(rounds: list[dict], label_names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rounds), figsize=(4.5 * len(rounds), 3.2), squeeze=False)
    for ax, rnd in zip(axes[0], rounds):
        edges = np.linspace(0, 1, 11)
        for h in rnd["weight_hist"]:
            ax.step(edges[:-1], h["hist"], where="post", label=label_names[h["label"]])
        ax.set_title(f"round {rnd['round']}: weights by label")
        ax.set_xlabel("weight")
        ax.set_ylabel("samples")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _accuracy_plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k, v in summary.items() if v.get("accuracy_mean") is not None]
    if not names:
        return
    means = [summary[k]["accuracy_mean"] for k in names]
    stds = [summary[k]["accuracy_std"] or 0 for k in names]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3.2))
    ax.bar(names, means, yerr=stds, color=["tab:green" if n == "sungen" else "tab:gray" for n in names])
    lo = max(0.0, min(means) - 0.1)
    ax.set_ylim(lo, min(1.0, max(means) + 0.05))
    ax.set_ylabel("gold accuracy")
    ax.set_title("SunGen vs baselines")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    examples = {}
    for label, name in enumerate(spec.label_names):
        rows = table[table.label == label].sort_values("weight")
        examples[name] = {
            "highest": [(float(w), t) for w, t in zip(rows.weight[::-1][:EXAMPLES], rows.text[::-1][:EXAMPLES])],
            "lowest": [(float(w), t) for w, t in zip(rows.weight[:EXAMPLES], rows.text[:EXAMPLES])],
        }
    report = {
        "name": cfg.name,
        "task": spec.name,
        "rounds": rounds,
        "final": final["result"] if final else None,
        "final_seconds": final and final["seconds"],
        "examples": examples,
        "total_seconds": round(total_seconds, 1),
    }
    layout.plots.mkdir(exist_ok=True)
    _weight_plot(rounds, spec.label_names, layout.plots / "weights_by_label.png")
    if final:
        _accuracy_plot(final["result"]["summary"], layout.plots / "accuracy.png")
    atomic.write_json(layout.report_json, report)
    tmp = layout.out / ".report.md.tmp"
    tmp.write_text(_markdown(report, spec))
    tmp.replace(layout.report_md)
    return report


def _markdown(rep: dict, spec) -> str:
    lines = [f"# sungen-ray report: {rep['name']} ({rep['task']})", ""]
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
    lines += ["", "![weights](plots/weights_by_label.png)", "", "## Time per stage (s)", ""]
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
