"""What users really feed the entry points, one table: each case must fail with a clear error that
names the bad file or field, and leave every output that was already there byte for byte intact.

Every case runs against one workspace holding prior outputs (a good pool, a trained model, a
finished reweighting); the whole workspace is hashed before and after the failing command.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from jobs.sungen_pipeline import main as pipeline_main
from sungen_ray.cli import main as cli_main
from sungen_ray.config import from_dict
from sungen_ray.errors import SungenError
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.reweight.outputs import run_digest
from sungen_ray.tam import final as final_model
from sungen_ray.tam.registry import TamConfig
from tests.reweight_data import sentiment_texts
from tests.test_pipeline_driver import DEMO
from tests.test_reweight_distributed import config_dict, make_pool

READ_ONLY = Path("/proc/sungen-ray-read-only")  # procfs: nothing can be created here, even by root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Prior outputs a user would have: a pool (two files), a trained model, a finished reweighting."""
    ws = tmp_path_factory.mktemp("ws")
    pool = make_pool(ws / "pool", n=60)
    table = pq.read_table(pool / "pool.parquet")
    pq.write_table(table.slice(30), pool / "pool-2.parquet")
    pq.write_table(table.slice(0, 30), pool / "pool.parquet")
    texts, labels = sentiment_texts(40)
    cfg = final_model.FinalConfig(tam=TamConfig(name="bow", buckets=1024, dim=8), epochs=1)
    final_model.save(ws / "model", final_model.fit(texts, labels, ["negative", "positive"], cfg))
    (ws / "reweight.yaml").write_text(json.dumps({**config_dict(), "outer_iters": 2}))
    assert (
        cli(["reweight", "--data", str(pool), "--out", str(ws / "weights"), "--config", str(ws / "reweight.yaml")])[0]
        == 0
    )
    return ws


def cli(argv: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli_main(argv)
    return code, err.getvalue()


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


# --- case builders: each gets the workspace and a fresh case dir, returns a callable that must fail


def truncated_parquet(ws, d):
    pool = d / "pool"
    pool.mkdir()
    for f in (ws / "pool").iterdir():
        (pool / f.name).write_bytes(f.read_bytes())
    data = (pool / "pool-2.parquet").read_bytes()
    (pool / "pool-2.parquet").write_bytes(data[: len(data) // 2])  # a writer died mid-file
    return lambda: reweight_cli(ws, pool, d / "out")


def reweight_cli(ws, data, out, *extra):
    code, err = cli(["reweight", "--data", str(data), "--out", str(out), "--config", str(ws / "reweight.yaml"), *extra])
    if code == 0:
        raise AssertionError("reweight accepted bad input")
    raise SungenError(err)


def checkpoint_missing_shard(ws, d):
    from sungen_ray.data.labelled import read_labelled

    cfg = from_dict(ReweightConfig, {**config_dict(), "outer_iters": 2})
    pool = str((ws / "pool").resolve())
    name = "reweight-" + run_digest(cfg, pool, len(read_labelled(pool)), workers=2)
    ckpt = d / "out" / "checkpoints" / name / "iter-000001"
    ckpt.mkdir(parents=True)
    (ckpt / "meta.json").write_text(json.dumps({"iteration": 1, "finished": False, "history": []}))
    (ckpt / "shard-00000.pt").write_bytes(b"rank 0's shard")  # rank 1's shard never arrived

    def run():
        from sungen_ray.reweight.distributed import run_distributed

        run_distributed(ws / "pool", d / "out", cfg, workers=2)

    return run


def truncated_state(ws, d):
    out = d / "out"
    out.mkdir()
    (out / "state.pt").write_bytes((ws / "weights" / "metrics.json").read_bytes()[:10])
    return lambda: reweight_cli(ws, ws / "pool", out)


def gold_file(rows):
    def build(ws, d):
        gold = d / "gold.jsonl"
        gold.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return lambda: evaluate_cli(ws, gold)

    return build


def evaluate_cli(ws, gold):
    code, err = cli(["evaluate", "--model", str(ws / "model"), "--gold", str(gold)])
    if code == 0:
        raise AssertionError("evaluate accepted bad gold data")
    raise SungenError(err)


def spec_without_placeholder(ws, d):
    spec = d / "spec.yaml"
    spec.write_text(
        "name: reviews\n"
        "condition: {prompt: 'Movie: \"', num_values: 4}\n"
        "labels:\n"
        '  - {name: negative, prompts: [\'A negative review of "{condition}": "\']}\n'
        "  - {name: positive, prompts: ['A positive review: \"']}\n"
    )
    return lambda: generate_cli(spec, d / "out", 8)


def generate_cli(task, out, n):
    code, err = cli(["generate", "--task", str(task), "--num-samples", str(n), "--out", str(out)])
    if code == 0:
        raise AssertionError("generate accepted bad input")
    raise SungenError(err)


def pipeline_num_samples(n):
    def build(ws, d):
        def run():
            import contextlib
            import io

            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = pipeline_main(
                    ["--config", str(DEMO), "--set", f"out={d / 'run'}", "--set", f"rounds=[{{num_samples: {n}}}]"]
                )
            if code == 0:
                raise AssertionError("pipeline accepted bad num_samples")
            raise SungenError(err.getvalue())

        return run

    return build


def too_many_workers(ws, d):
    import ray

    cpus = int(ray.cluster_resources()["CPU"])

    def run():
        reweight_cli(ws, ws / "pool", d / "out", "--workers", str(cpus + 1))

    return run


@dataclass
class Case:
    name: str
    build: Callable[[Path, Path], Callable[[], None]]
    message: str  # regex the error must match: names the file or field
    needs_ray: bool = False


CASES = [
    Case("truncated parquet in a pool dir", truncated_parquet, r"pool-2\.parquet: not a readable Parquet file"),
    Case(
        "checkpoint dir missing a shard",
        checkpoint_missing_shard,
        r"iter-000001: incomplete, missing \['shard-00001\.pt'\]",
    ),
    Case("truncated state.pt", truncated_state, r"state\.pt: unreadable reweighting state"),
    Case(
        "gold: empty text",
        gold_file([{"text": "fine", "label": 1}, {"text": " ", "label": 0}]),
        r"gold\.jsonl: field 'text' is empty in row 1",
    ),
    Case(
        "gold: null label",
        gold_file([{"text": "fine", "label": 1}, {"text": "bad", "label": None}]),
        r"gold\.jsonl: field 'label' is null",
    ),
    Case(
        "gold: 1 MB row",
        gold_file([{"text": "word " * 200_000, "label": 1}]),
        r"gold\.jsonl: field 'text' of row 0 has 1,000,000 characters",
    ),
    Case(
        "spec template lacks {condition}",
        spec_without_placeholder,
        r"labels\[1\]\.prompts\[0\]: lacks the \{condition\} placeholder",
    ),
    Case(
        "negative num_samples", lambda ws, d: lambda: generate_cli("sst2", d / "out", -5), r"num_samples: must be > 0"
    ),
    Case(
        "huge num_samples",
        lambda ws, d: lambda: generate_cli("sst2", d / "out", 10**12),
        r"num_samples: at most 100,000,000",
    ),
    Case("pipeline: negative num_samples", pipeline_num_samples(-3), r"num_samples: must be > 0"),
    Case("pipeline: huge num_samples", pipeline_num_samples(10**12), r"num_samples: at most"),
    Case(
        "--workers > CPUs in the cluster",
        too_many_workers,
        r"workers: \d+ workers need \d+ CPU but the Ray cluster has",
        True,
    ),
    Case(
        "generate --out on a read-only path",
        lambda ws, d: lambda: generate_cli("sst2", READ_ONLY / "out", 8),
        r"sungen-ray-read-only/out",
    ),
    Case(
        "reweight --out on a read-only path",
        lambda ws, d: lambda: reweight_cli(ws, ws / "pool", READ_ONLY / "out"),
        r"sungen-ray-read-only/out",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_clearly_and_keeps_prior_outputs(case, workspace, tmp_path, request):
    if case.needs_ray:
        request.getfixturevalue("ray_local")
    action = case.build(workspace, tmp_path)
    before, case_before = digest(workspace), digest(tmp_path)
    with pytest.raises(SungenError, match=case.message):
        action()
    assert digest(workspace) == before  # prior outputs: nothing overwritten or deleted
    after = digest(tmp_path)
    assert {k: after.get(k) for k in case_before} == case_before  # the case's own input files too
