"""``sungen-ray run --config X.yaml``: rounds of generate -> reweight -> select, then train,
evaluate and report (``sungen_ray.pipeline.driver``).

Every stage writes into its own directory and finishes by atomically writing ``stage.json``
(a hash of its inputs, its result, its seconds). A re-submitted job skips every stage whose
``stage.json`` matches and resumes the unfinished one (generation from its staged rows,
reweighting from its last iteration's checkpoint). ``--describe`` prints that plan and exits.
"""

from __future__ import annotations

import argparse


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--config", required=True, help="pipeline YAML (see jobs/configs/)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    ap.add_argument(
        "--stop-after", help="stop after a stage, e.g. generate-0, reweight-0, select-1 or final (for staged runs)"
    )
    ap.add_argument(
        "--describe",
        action="store_true",
        help="print the stages with their input hashes and whether each would be skipped; run nothing",
    )
    ap.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray Data operator progress and Ray/vLLM INFO logs (config: verbose)",
    )


def run(args: argparse.Namespace) -> int:
    from sungen_ray.parallel.quiet import set_verbose
    from sungen_ray.pipeline.config import load_config
    from sungen_ray.pipeline.driver import describe, run_pipeline

    cfg = load_config(args.config, args.set)
    set_verbose(cfg.verbose or args.verbose)
    if args.describe:
        describe(cfg, args.stop_after)
        return 0
    run_pipeline(cfg, args.stop_after)
    return 0
