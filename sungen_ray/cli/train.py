"""``sungen-ray train``: fit the final TAM on a pool, optionally curated by learned weights."""

from __future__ import annotations

import argparse

from sungen_ray.config import field_choices
from sungen_ray.curate.selection import SelectConfig
from sungen_ray.tam.config import TamConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="pool Parquet dir/file (or JSONL/CSV with text, label)")
    p.add_argument("--out", required=True, help="directory for model.json, model.safetensors and train.json")
    p.add_argument("--weights", help="weights.parquet (or its directory) from `sungen-ray reweight`")
    p.add_argument("--select", choices=field_choices(SelectConfig, "mode"), default=SelectConfig.mode)
    p.add_argument("--fraction", type=float, default=SelectConfig.fraction, help="kept fraction for the top modes")
    p.add_argument(
        "--threshold", type=float, default=SelectConfig.threshold, help="keep weight > threshold (mode threshold)"
    )
    p.add_argument("--weighted", action="store_true", help="train with the kept samples' weights")
    p.add_argument("--tam", choices=field_choices(TamConfig, "name"), default=TamConfig.name)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-labels", type=int, help="number of classes (default: from the data)")
    p.add_argument("--device", default="auto", help="cpu, cuda (or cuda:N) or auto = the GPU if torch sees one")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from sungen_ray.config import from_dict
    from sungen_ray.curate.curated import curate, label_names_of
    from sungen_ray.curate.weights import read_weights
    from sungen_ray.data import atomic
    from sungen_ray.data.labelled import load_data
    from sungen_ray.tam import final as final_model

    data, num_labels = load_data(args.data, args.num_labels)
    names = label_names_of(args.data, num_labels)
    sel = from_dict(
        SelectConfig,
        {"mode": args.select, "fraction": args.fraction, "threshold": args.threshold, "weighted": args.weighted},
        "select",
    )
    weights = read_weights(args.weights, data.idx) if args.weights else np.ones(len(data))
    if not args.weights and sel.mode != "all":
        sel.mode = "all"  # without weights there is nothing to select by
    curated = curate(data, weights, sel, num_labels)
    cfg = from_dict(
        final_model.FinalConfig,
        {"tam": {"name": args.tam}, "epochs": args.epochs, "seed": args.seed, "device": args.device},
    )
    trained = final_model.fit(curated.data.text, curated.data.label, names, cfg, curated.weights)
    out = Path(args.out)
    final_model.save(out, trained, {"data": str(args.data), "weights": args.weights})
    atomic.write_json(
        out / "train.json", {"kept": len(curated.data), "pool": len(data), "label_shares": curated.shares}
    )
    print(f"trained {args.tam} on {len(curated.data)} of {len(data)} samples -> {out / final_model.MODEL_FILE}")
    return 0
