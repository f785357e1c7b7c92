"""One call to reweight a pool, however it runs: the CLI and the driver both come through here.

``workers == 1`` runs the core loop in this process (resumable from ``OUT/state.pt``);
``workers > 1`` runs the very same loop on Ray Train workers with sharded weights.
"""

from __future__ import annotations

from pathlib import Path

from sungen_ray.config import config_hash, to_dict
from sungen_ray.errors import SungenError
from sungen_ray.reweight.config import ReweightConfig


def iteration_line(metrics: dict, max_iters: int) -> str:
    """One progress line per outer iteration: where it is, whether the selection still moves, how long
    an iteration takes (the stopping rule ends the run once the change stays small)."""
    seconds = sum(metrics["seconds"].values())
    stop = ", stopping: selection stable" if metrics.get("stopped") else ""
    return (
        f"[reweight] iteration {metrics['iteration']}/{max_iters}: selection change {metrics['selection_change']:.2%}, "
        f"{seconds:.2f} s/iter, inner loss {metrics['inner_loss']:.4f}, outer loss {metrics['outer_loss']:.4f}{stop}"
    )


def reweight_pool(
    data: str | Path,
    out: str | Path,
    cfg: ReweightConfig,
    workers: int = 1,
    use_gpu: bool = False,
    num_labels: int | None = None,
    max_failures: int = 2,
    storage_path: str | None = None,
    threads_per_worker: int = 1,
) -> Path:
    """Write ``OUT/weights.parquet`` and ``OUT/metrics.json`` for the pool at ``data``; return OUT.

    ``max_failures``, ``storage_path`` (checkpoints; local, NFS, s3:// or gs://) and
    ``threads_per_worker`` apply to the Ray Train path only.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SungenError(f"--out {out}: exists and is not a directory")
    if workers != 1 or use_gpu:  # run_distributed rejects workers < 1 with a clear error
        from sungen_ray.reweight.distributed import run_distributed

        summary = run_distributed(
            data,
            out,
            cfg,
            workers,
            use_gpu=use_gpu,
            max_failures=max_failures,
            storage_path=storage_path,
            num_labels=num_labels,
            threads_per_worker=threads_per_worker,
        )
        verb = "already finished, kept" if summary["skipped"] else "wrote"
        print(
            f"[reweight] {verb} {out / 'weights.parquet'} ({summary['num_samples']} weights, "
            f"{summary['iterations_run']} iterations, {workers} Ray Train workers, run {summary['run_name']})"
        )
        return out

    from sungen_ray.reweight.loop import run as run_loop
    from sungen_ray.reweight.outputs import load_state, save_state, write_outputs
    from sungen_ray.reweight.shard import load_data, make_shard

    cfg.validate()
    pool, num_labels = load_data(data, num_labels)
    shard = make_shard(pool, num_labels, cfg.tam)
    digest = config_hash({"config": to_dict(cfg), "data": str(Path(data).resolve()), "n": len(pool)})
    state, history = load_state(out, digest)
    if state is not None:
        print(f"[reweight] resuming from iteration {state['iteration']} ({out / 'state.pt'})", flush=True)

    def checkpoint(state, metrics):
        history.append(metrics)
        save_state(out, state, history, digest)
        print(iteration_line(metrics, cfg.outer_iters), flush=True)

    state, _ = run_loop(shard, cfg, state=state, on_iteration=checkpoint)
    write_outputs(out, shard.idx, state["theta"], history, cfg, digest)
    print(f"[reweight] wrote {out / 'weights.parquet'} ({len(shard)} weights, {state['iteration']} iterations)")
    return out
