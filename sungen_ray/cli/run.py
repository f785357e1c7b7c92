"""``sungen-ray run --config X.yaml``: the driver, as a CLI subcommand."""

from jobs.sungen_pipeline import add_arguments, run

__all__ = ["add_arguments", "run"]
