"""``sungen-ray reweight``: learn one weight per sample of a labelled pool (one process, or
``--workers W`` Ray Train workers with sharded weights, see ``distributed.py``).

Writes ``weights.parquet`` (idx, theta, weight), ``metrics.json`` (per-iteration inner/outer
loss, seconds per phase, weight histogram by label) and ``state.pt`` after every outer
iteration, so re-running the same command on the same --out resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sungen_ray.config import config_hash, from_dict, load_yaml, to_dict
from sungen_ray.errors import SungenError

# CLI flag -> config field (flags left unset keep the --config / default value)
FLAGS = {
    "outer_iters": "outer_iters",
    "outer_loss": "outer_loss",
    "hypergrad": "hypergrad",
    "inner_epochs": "inner_epochs",
    "valid_size": "valid_size",
    "seed": "seed",
    "tau": "tau",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="pool Parquet dir/file, or JSONL/CSV with text and label")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", help="YAML with ReweightConfig fields (flags override it)")
    p.add_argument("--tam", choices=["bow", "lstm", "minilm"])
    p.add_argument("--outer-iters", type=int, help="maximum outer iterations T (default 50)")
    p.add_argument("--outer-loss", choices=["rce", "mae", "ce"])
    p.add_argument("--hypergrad", choices=["auto", "fd", "jvp", "reference"])
    p.add_argument("--inner-epochs", type=int)
    p.add_argument("--valid-size", type=int)
    p.add_argument("--tau", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--num-labels", type=int, help="number of classes (labels must be 0..K-1)")
    p.add_argument("--no-early-stop", action="store_true", help="run all --outer-iters iterations")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default; per worker)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (1 = this process, no Ray)")
    p.add_argument("--use-gpu", action="store_true", help="one GPU per Ray Train worker, nccl collectives")
    p.add_argument("--max-failures", type=int, default=2, help="Ray Train restarts from the latest checkpoint")
    p.add_argument("--storage-path", help="checkpoints: path or s3:// gs:// URI (default OUT/checkpoints)")


def build_config(args: argparse.Namespace):
    from sungen_ray.reweight.config import ReweightConfig

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

    from sungen_ray.reweight.loop import run as run_loop
    from sungen_ray.reweight.outputs import load_state, save_state, write_outputs
    from sungen_ray.reweight.shard import load_data, make_shard

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = build_config(args)
    if args.workers != 1 or args.use_gpu:  # run_distributed rejects workers < 1
        return run_ray_train(args, cfg)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SungenError(f"--out {out}: exists and is not a directory")
    data, num_labels = load_data(args.data, args.num_labels)
    shard = make_shard(data, num_labels, cfg.tam)
    digest = config_hash({"config": to_dict(cfg), "data": str(Path(args.data).resolve()), "n": len(data)})
    state, history = load_state(out, digest)
    if state is not None:
        print(f"resuming from iteration {state['iteration']} ({out / 'state.pt'})")

    def checkpoint(state, metrics):
        history.append(metrics)
        save_state(out, state, history, digest)
        print(
            f"iter {metrics['iteration']}: inner {metrics['inner_loss']:.4f} outer {metrics['outer_loss']:.4f} "
            f"change {metrics['selection_change']:.4f} "
            + " ".join(f"{k} {v:.2f}s" for k, v in metrics["seconds"].items())
        )

    state, _ = run_loop(shard, cfg, state=state, on_iteration=checkpoint)
    write_outputs(out, shard.idx, state["theta"], history, cfg, digest)
    print(f"wrote {out / 'weights.parquet'} ({len(shard)} weights, {state['iteration']} iterations)")
    return 0


def run_ray_train(args: argparse.Namespace, cfg) -> int:
    from sungen_ray.reweight.distributed import run_distributed

    summary = run_distributed(
        args.data,
        args.out,
        cfg,
        args.workers,
        use_gpu=args.use_gpu,
        max_failures=args.max_failures,
        storage_path=args.storage_path,
        num_labels=args.num_labels,
        threads_per_worker=max(1, args.threads),
    )
    verb = "already finished, kept" if summary["skipped"] else "wrote"
    print(
        f"{verb} {Path(args.out) / 'weights.parquet'} ({summary['num_samples']} weights, "
        f"{summary['iterations_run']} iterations, {args.workers} Ray Train workers, run {summary['run_name']})"
    )
    return 0
