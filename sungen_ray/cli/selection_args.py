"""The arguments that name a pool, its weights and which rows to keep, and the curated rows they
give: shared by ``train`` and ``export`` (a module of its own so neither imports the other)."""

from __future__ import annotations

import argparse

from sungen_ray.config import field_choices
from sungen_ray.curate.selection import SelectConfig


def add_selection_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments that say which rows of a pool to keep: shared by ``train`` and ``export``."""
    p.add_argument("--data", required=True, help="pool Parquet dir/file (or JSONL/CSV with text, label)")
    p.add_argument(
        "--task",
        help="built-in task name or spec YAML: the label names and number of labels come from it "
        "(default: the data's label_name column, else '0', '1', ...)",
    )
    p.add_argument("--weights", help="weights.parquet (or its directory) from `sungen-ray reweight`")
    p.add_argument("--select", choices=field_choices(SelectConfig, "mode"), default=SelectConfig.mode)
    p.add_argument("--fraction", type=float, default=SelectConfig.fraction, help="kept fraction for the top modes")
    p.add_argument(
        "--threshold", type=float, default=SelectConfig.threshold, help="keep weight > threshold (mode threshold)"
    )
    p.add_argument(
        "--weighted",
        action=argparse.BooleanOptionalAction,
        default=SelectConfig.weighted,
        help="train with the kept samples' weights, scaled per label (--no-weighted: uniform)",
    )
    p.add_argument("--num-labels", type=int, help="number of classes (default: the task's, else from the data)")


def curated_from_args(args: argparse.Namespace):
    """(task spec or None, label names, the pool, the selection config, the curated rows)."""
    import numpy as np

    from sungen_ray.config import from_dict
    from sungen_ray.curate.curated import curate, label_names_of
    from sungen_ray.curate.weights import read_weights
    from sungen_ray.data.labelled import load_data

    spec = _task(args.task, args.num_labels) if args.task else None
    data, num_labels = load_data(args.data, spec.num_labels if spec else args.num_labels)
    names = label_names_of(args.data, num_labels)
    if spec is not None:
        names = _task_names(args.data, names, spec)
    sel = from_dict(
        SelectConfig,
        {"mode": args.select, "fraction": args.fraction, "threshold": args.threshold, "weighted": args.weighted},
        "select",
    )
    weights = read_weights(args.weights, data.idx) if args.weights else np.ones(len(data))
    if not args.weights and sel.mode != "all":
        sel.mode = "all"  # without weights there is nothing to select by
    return spec, names, data, sel, curate(data, weights, sel, num_labels), weights


def _task(task: str, num_labels: int | None):
    from sungen_ray.errors import SungenError
    from sungen_ray.tasks.spec import load_task

    try:
        spec = load_task(task)
    except SungenError as exc:
        raise SungenError(f"--task: {exc}") from exc
    if num_labels is not None and num_labels != spec.num_labels:
        raise SungenError(f"--num-labels {num_labels} but task {spec.name} has {spec.num_labels} labels")
    return spec


def _task_names(data, found: list[str], spec) -> list[str]:
    """The task's label names, after checking the data's own ``label_name`` column agrees with them."""
    from sungen_ray.errors import SungenError

    for k, (name, expected) in enumerate(zip(found, spec.label_names)):
        if name != str(k) and name.lower() != expected.lower():
            raise SungenError(
                f"{data}: label {k} is named {name!r} in the data but {expected!r} in task {spec.name} "
                f"(labels {spec.label_names})"
            )
    return list(spec.label_names)
