"""``sungen-ray train``: fit the final TAM on a pool, optionally curated by learned weights."""

from __future__ import annotations

import argparse

from sungen_ray.cli.selection_args import add_selection_arguments, curated_from_args
from sungen_ray.config import field_choices
from sungen_ray.tam.config import TamConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_selection_arguments(p)
    p.add_argument("--out", required=True, help="directory for the model (a transformers directory for minilm-ft)")
    p.add_argument("--tam", choices=field_choices(TamConfig, "name"), default=TamConfig.name)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda (or cuda:N) or auto = the GPU if torch sees one")
    p.add_argument("--export", metavar="DIR", help="also write the curated set as a dataset with a card (see export)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sungen_ray.config import from_dict
    from sungen_ray.data import atomic
    from sungen_ray.plm.identity import generators_of
    from sungen_ray.tam import final as final_model

    spec, names, data, sel, curated, weights = curated_from_args(args)
    cfg = from_dict(
        final_model.FinalConfig,
        {"tam": {"name": args.tam}, "epochs": args.epochs, "seed": args.seed, "device": args.device},
    )
    if args.export:
        from sungen_ray.cli.export import export_curated

        export_curated(args, spec, names, data, sel, curated, weights)
    trained = final_model.fit(curated.data.text, curated.data.label, names, cfg, curated.weights)
    out = Path(args.out)
    meta = {
        "task": spec.name if spec else None,
        # names, not paths: a model handed to someone else names no directory of this machine
        "data": Path(args.data).name,
        "weights": Path(args.weights).name if args.weights else None,
        "generator": generators_of(args.data),
    }
    final_model.save(out, trained, meta)
    atomic.write_json(
        out / "train.json", {"kept": len(curated.data), "pool": len(data), "label_shares": curated.shares}
    )
    print(f"trained {args.tam} on {len(curated.data)} of {len(data)} samples -> {out}")
    return 0
