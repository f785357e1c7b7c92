"""``sungen-ray generate``: write a labelled synthetic pool (Parquet + manifest.json)."""

from __future__ import annotations

import argparse

from sungen_ray.generation.config import DTYPES, ENGINES

# flags whose value is a GenerateConfig field of the same name (argparse's dest)
FIELDS = (
    "task",
    "num_samples",
    "out",
    "model",
    "engine",
    "replicas",
    "seed",
    "batch_size",
    "cpus_per_replica",
    "max_num_seqs",
    "dtype",
    "max_prompts_per_sample",
    "round",
    "idx_offset",
    "use_gpu",
    "ordered",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="built-in task name (sst2, imdb, ...) or path to a spec YAML")
    parser.add_argument("--num-samples", type=int, required=True, help="usable samples to keep, balanced over labels")
    parser.add_argument("--out", required=True, help="output directory (new or empty, or this run's own to resume)")
    parser.add_argument("--model", default=None, help="local model dir or hub id (default: embedded SmolLM2-135M)")
    parser.add_argument("--engine", choices=ENGINES, default="vllm")
    parser.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="engine replicas (default: one with all CPU cores, or one per GPU)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per engine batch")
    parser.add_argument(
        "--cpus-per-replica",
        type=int,
        default=None,
        help="CPUs each CPU engine replica reserves (default: the cores over the replicas)",
    )
    parser.add_argument(
        "--max-num-seqs", type=int, default=None, help="sequences an engine decodes at once (default: 256 on CPU)"
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="vLLM's math dtype (default auto: float32 on CPU, vLLM's on GPU; bfloat16 is faster on AMX CPUs, "
        "but a row's text then depends on its batch)",
    )
    parser.add_argument(
        "--max-prompts-per-sample",
        type=float,
        default=4.0,
        help="give up (rows staged; a rerun with more resumes) after this many prompts per requested sample",
    )
    parser.add_argument("--round", type=int, default=0, help="round number stored in the pool")
    parser.add_argument("--idx-offset", type=int, default=0, help="first idx of this pool (unique across rounds)")
    parser.add_argument(
        "--unordered",
        dest="ordered",
        action="store_false",
        help="keep rows as they finish instead of in prompt order: faster start, but the kept rows then "
        "depend on timing (a rerun or a resumed run may keep others)",
    )
    parser.add_argument("--verbose", action="store_true", help="show Ray Data operator progress and Ray/vLLM INFO logs")
    gpu = parser.add_mutually_exclusive_group()
    gpu.add_argument("--use-gpu", dest="use_gpu", action="store_true", default=None)
    gpu.add_argument("--no-gpu", dest="use_gpu", action="store_false")


def run(args: argparse.Namespace) -> int:
    from sungen_ray.config import from_dict
    from sungen_ray.generation.config import GenerateConfig
    from sungen_ray.generation.pipeline import generate
    from sungen_ray.parallel.quiet import set_verbose

    set_verbose(args.verbose)
    cfg = from_dict(GenerateConfig, {f: getattr(args, f) for f in FIELDS})
    generate(cfg)
    print(f"pool written to {cfg.out}")
    return 0
