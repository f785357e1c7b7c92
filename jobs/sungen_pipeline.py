"""The driver's entry point, for ``ray job submit ... -- python -m jobs.sungen_pipeline --config X.yaml``
(the same as ``sungen-ray run``; the library is ``sungen_ray.pipeline``).

    python -m jobs.sungen_pipeline --config jobs/configs/demo.yaml [--set key.path=value ...]
"""

from __future__ import annotations

import argparse
import sys

from sungen_ray.cli import run as run_command
from sungen_ray.errors import SungenError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jobs.sungen_pipeline", description=__doc__.splitlines()[0])
    run_command.add_arguments(ap)
    try:
        return run_command.run(ap.parse_args(argv))
    except SungenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
