"""``sungen-ray reweight``: learn one weight per sample of a labelled pool (one process, or
``--workers W`` Ray Train workers with sharded weights, see ``reweight/distributed.py``).

Writes ``weights.parquet`` (idx, theta, weight), ``metrics.json`` (per-iteration inner/outer
loss, seconds per phase, weight histogram by label) and ``state.pt`` after every outer
iteration, so re-running the same command on the same --out resumes where it stopped.
"""

from __future__ import annotations

import argparse

from sungen_ray.config import field_choices, from_dict, load_yaml
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.tam.config import TamConfig

# CLI flag -> config field (flags left unset keep the --config / default value)
FLAGS = {
    "outer_iters": "outer_iters",
    "outer_loss": "outer_loss",
    "hypergrad": "hypergrad",
    "inner_epochs": "inner_epochs",
    "valid_size": "valid_size",
    "seed": "seed",
    "tau": "tau",
    "device": "device",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="pool Parquet dir/file, or JSONL/CSV with text and label")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", help="YAML with ReweightConfig fields (flags override it)")
    p.add_argument("--tam", choices=field_choices(TamConfig, "name"))
    p.add_argument("--outer-iters", type=int, help="maximum outer iterations T (default 50)")
    p.add_argument("--outer-loss", choices=field_choices(ReweightConfig, "outer_loss"))
    p.add_argument("--hypergrad", choices=field_choices(ReweightConfig, "hypergrad"))
    p.add_argument("--inner-epochs", type=int)
    p.add_argument("--valid-size", type=int)
    p.add_argument("--tau", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--num-labels", type=int, help="number of classes (labels must be 0..K-1)")
    p.add_argument("--no-early-stop", action="store_true", help="run all --outer-iters iterations")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default; per worker)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (1 = this process, no Ray)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per Ray Train worker, nccl collectives")
    p.add_argument(
        "--device", help="one process: cpu, cuda (or cuda:N) or auto = the GPU if torch sees one (default auto)"
    )
    p.add_argument("--max-failures", type=int, default=2, help="Ray Train restarts from the latest checkpoint")
    p.add_argument("--storage-path", help="checkpoints: path or s3:// gs:// URI (default OUT/checkpoints)")


def build_config(args: argparse.Namespace):
    data = load_yaml(args.config) if args.config else {}
    for flag, field in FLAGS.items():
        if getattr(args, flag, None) is not None:
            data[field] = getattr(args, flag)
    if args.tam:
        data["tam"] = {**data.get("tam", {}), "name": args.tam}
    if args.no_early_stop:
        data["stop_patience"] = 0
    return from_dict(ReweightConfig, data, "config")


def run(args: argparse.Namespace) -> int:
    import torch

    from sungen_ray.reweight.api import reweight_pool

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build_config(args)
    reweight_pool(
        args.data,
        args.out,
        cfg,
        workers=args.workers,
        use_gpu=args.use_gpu,
        num_labels=args.num_labels,
        max_failures=args.max_failures,
        storage_path=args.storage_path,
        threads_per_worker=max(1, args.threads),
    )
    return 0
