"""The committed pool bank (benchmarks/pools) and the gold files beside the checkout: what the
quality and ablation benchmarks run on when given no pool, so their figures can be rerun on a
fresh clone (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

BANK = Path(__file__).resolve().parent / "pools"
DEFAULT_POOL = "demo-sst2-1000"
# the shared gold sets (never copied into the repo): ../shared/data from the checkout
GOLD_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
GOLD = {
    "sst2": "sst2/validation.jsonl",
    "agnews": "ag_news/test.jsonl",
    "imdb": "imdb/test.jsonl",
    "dbpedia": "dbpedia/test.jsonl",
}


def bank_pool(name: str) -> tuple[Path, str]:
    """(the pool file, its task) of a bank pool, or exit naming the pools there are."""
    manifest = json.loads((BANK / "manifest.json").read_text())
    if name not in manifest:
        raise SystemExit(f"--bank: no pool {name!r} in {BANK / 'manifest.json'}; have {sorted(manifest)}")
    return BANK / name / "pool.parquet", manifest[name]["task"]


def default_gold(task: str) -> str:
    """The shared gold file of ``task``, or exit saying to pass --gold."""
    path = GOLD_DIR / GOLD[task] if task in GOLD else None
    if path is None or not path.is_file():
        raise SystemExit(f"--gold: no default gold file for task {task!r} (looked in {GOLD_DIR}); pass --gold FILE")
    return str(path)
