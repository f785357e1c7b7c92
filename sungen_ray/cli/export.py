"""``sungen-ray export``: the curated set as a dataset others load (``datasets.load_dataset(DIR)``)
and share, with a card that says what the labels mean and which generator and method made it."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sungen_ray.cli.selection_args import add_selection_arguments

    add_selection_arguments(p)
    p.add_argument("--out", required=True, help="dataset directory (README.md card + data/*.parquet); replaced")
    p.add_argument("--license", help="licence id for the card (default: the generator's, when it is known)")


def export_curated(args, spec, names, data, sel, curated, weights) -> None:
    """Write ``args.export`` (from ``train``) or ``args.out`` (from ``export``)."""
    from dataclasses import asdict
    from pathlib import Path

    from sungen_ray.curate.dataset import write_dataset
    from sungen_ray.curate.export_table import curated_table
    from sungen_ray.data.atomic import read_json
    from sungen_ray.data.labelled import read_table
    from sungen_ray.plm.identity import generators_of

    settings = {"select": asdict(sel)}
    if args.weights:
        metrics = Path(args.weights)
        metrics = (metrics if metrics.is_dir() else metrics.parent) / "metrics.json"
        if metrics.is_file():
            settings["reweight"] = read_json(metrics).get("config")
    provenance = {
        "task": spec.name if spec else Path(args.data).name,
        "generator": generators_of(args.data),
        "method": "SunGen bilevel robust reweighting, then selection by weight"
        if args.weights
        else "no curation (every row of the pool)",
        "settings": settings,
        "pool_rows": len(data),
        "source": Path(args.data).name,
    }
    table = curated_table(read_table(args.data), curated.data.idx, weights[curated.keep] if args.weights else None)
    out = getattr(args, "export", None) or args.out
    write_dataset(out, table, names, provenance, getattr(args, "license", None))
    print(f"exported {table.num_rows} of {len(data)} samples -> {out} (datasets.load_dataset({str(out)!r}))")


def run(args: argparse.Namespace) -> int:
    from sungen_ray.cli.selection_args import curated_from_args

    export_curated(args, *curated_from_args(args))
    return 0
