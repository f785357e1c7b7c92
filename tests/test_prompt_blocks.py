"""The prompt stream's blocks are whole engine batches (``generation.pipeline.prompt_dataset``).

``ray.data.range(n, override_num_blocks=ceil(n / batch_size))`` splits n evenly, so blocks held
62-63 rows for batch_size 64; the replica stage then bundled two blocks into one task (two engine
calls at once, their outputs merged into one block), which doubled the rows in flight per replica
and held finished batches back from the driver until another task finished (docs/RESULTS.md,
"The first batch's hand-off, found")."""

from __future__ import annotations

from sungen_ray.generation.config import GenerateConfig
from sungen_ray.generation.pipeline import prompt_dataset
from sungen_ray.generation.prompts import PromptStream
from sungen_ray.tasks.spec import load_task


def _blocks(ds) -> list[list[int]]:
    import ray

    return [
        list(map(int, ray.get(ref)["row_id"].to_pylist()))
        for bundle in ds.iter_internal_ref_bundles()
        for ref in bundle.block_refs
    ]


def test_prompt_blocks_are_whole_engine_batches_up_to_the_limit(ray_local, tmp_path):
    cfg = GenerateConfig(task="sst2", num_samples=100, out=str(tmp_path / "pool"), batch_size=64)
    stream = PromptStream(load_task("sst2"), [1, 1], seed=0, start_id=1000, first=10)
    ds, blocks = prompt_dataset(cfg, stream, limit=160)
    got = _blocks(ds)
    assert blocks == 3
    assert [len(b) for b in got] == [64, 64, 22]  # 150 positions: 10 .. 159
    assert [r for b in got for r in b] == list(range(1010, 1160))
