"""The ``sungen-ray`` command: one subcommand per pipeline stage.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args)``;
modules are imported lazily so ``sungen-ray --help`` does not pay for importing vLLM or torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sungen_ray.errors import SungenError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare-model": (
        "sungen_ray.cli.prepare_model",
        "convert the embedded default PLM (or check --model) and print its path",
    ),
    "generate": ("sungen_ray.cli.generate", "generate a labelled synthetic pool with Ray Data + vLLM"),
    "reweight": ("sungen_ray.cli.reweight", "learn per-sample weights (SunGen bilevel robust reweighting)"),
    "train": ("sungen_ray.cli.train", "train the final task model on a (curated) pool"),
    "export": ("sungen_ray.cli.export", "write a (curated) pool as a dataset with a card that datasets loads"),
    "evaluate": ("sungen_ray.cli.evaluate", "accuracy and macro-F1 of a trained task model on a gold file"),
    "predict": ("sungen_ray.cli.predict", "classify new text (--text or a JSONL/CSV/Parquet file) with a model"),
    "run": ("sungen_ray.cli.run", "run the whole pipeline (rounds of generate/reweight/select, train, report)"),
    "submit": ("sungen_ray.cli.submit", "run the pipeline driver as a Ray job on a cluster and follow it"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with ``only`` set, one whose other subcommands carry just their help line
    (so running one stage never imports the others' modules; ``only=""`` imports none)."""
    parser = argparse.ArgumentParser(prog="sungen-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if only is None or only == name:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    # no known subcommand (--help, a typo): argparse answers from the help lines alone, importing nothing
    args = build_parser(only=first if first in COMMANDS else "").parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except SungenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
