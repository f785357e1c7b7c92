"""``sungen-ray prepare-model``: make the default PLM (or a given one) ready and print its path."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="local model dir or hub id to check (default: embedded SmolLM2)")
    parser.add_argument("--force", action="store_true", help="re-convert the embedded default even if cached")


def run(args: argparse.Namespace) -> int:
    from sungen_ray.plm.prepare import prepare_default_model, resolve_model

    path = prepare_default_model(force=True) if args.force and args.model is None else resolve_model(args.model)
    print(path)
    return 0
