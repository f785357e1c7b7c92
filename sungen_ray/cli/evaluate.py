"""``sungen-ray evaluate``: accuracy and macro-F1 of a trained TAM on a gold file."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="directory written by `sungen-ray train` (or its model.json)")
    p.add_argument("--gold", required=True, help="gold JSONL/CSV/Parquet with text and label (id or name)")
    p.add_argument("--task", help="task whose label names the gold labels must match (default: the model's)")
    p.add_argument("--out", help="write the metrics JSON here too")


def run(args: argparse.Namespace) -> int:
    from sungen_ray.data import atomic
    from sungen_ray.errors import SungenError
    from sungen_ray.tam import final as final_model
    from sungen_ray.tasks.spec import load_task

    trained = final_model.load(args.model)
    if args.task:
        names = load_task(args.task).label_names
        if [n.lower() for n in names] != [n.lower() for n in trained.label_names]:
            raise SungenError(
                f"--task {args.task} has labels {names} but the model was trained on {trained.label_names}"
            )
    result = final_model.evaluate(trained, args.gold)
    if args.out:
        atomic.write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("n", "accuracy", "macro_f1")}))
    for name, c in result["per_class"].items():
        print(f"  {name:>12}: gold {c['gold']:5d}  predicted {c['predicted']:5d}  F1 {c['f1']:.3f}")
    return 0
