"""One call to reweight a pool, however it runs: the CLI and the driver both come through here.

``workers == 1`` runs the core loop in this process (resumable from ``OUT/state.pt``);
``workers > 1`` runs the very same loop on Ray Train workers with sharded weights.
"""

from __future__ import annotations

from pathlib import Path

from sungen_ray.data.atomic import ensure_writable_dir
from sungen_ray.reweight.config import ReweightConfig
from sungen_ray.reweight.health import add_health
from sungen_ray.reweight.outputs import check_out_dir, finished_output, log_iteration, read_summary, run_digest


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
    out = check_out_dir(Path(out))
    ensure_writable_dir(out)  # fail now, not after the first outer iteration
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
        add_health(out, data, num_labels, cfg.tam.name)
        verb = "already finished, kept" if summary["skipped"] else "wrote"
        print(
            f"[reweight] {verb} {out / 'weights.parquet'} ({summary['num_samples']} weights, "
            f"{summary['iterations_run']} iterations, {workers} Ray Train workers, run {summary['run_name']})"
        )
        return out

    from sungen_ray.features.pool import ensure_tam_features
    from sungen_ray.reweight.loop import run as run_loop
    from sungen_ray.reweight.loop import state_to
    from sungen_ray.reweight.outputs import load_state, save_state, write_outputs
    from sungen_ray.reweight.shard import load_shard, pool_ids_and_labels
    from sungen_ray.tam.device import resolve_device

    cfg.validate()
    data_path = str(Path(data).resolve())
    if (out / "metrics.json").is_file():  # a re-run: keep finished outputs before reading any text
        n = len(pool_ids_and_labels(data, num_labels)[0])
        if finished_output(out, run_digest(cfg, data_path, n)):
            done = read_summary(out)
            add_health(out, data, num_labels, cfg.tam.name)
            print(f"[reweight] already finished, kept {out / 'weights.parquet'} ({done['iterations_run']} iterations)")
            return out
    ensure_tam_features(data, cfg.tam.name)
    shard = load_shard(data, num_labels, cfg.tam).to(resolve_device(cfg.device))
    digest = run_digest(cfg, data_path, len(shard))
    state, history = load_state(out, digest)
    if state is not None:
        print(f"[reweight] resuming from iteration {state['iteration']} ({out / 'state.pt'})", flush=True)

    def checkpoint(state, metrics):
        history.append(metrics)
        save_state(out, state_to(state, "cpu"), history, digest)
        log_iteration(metrics, cfg.outer_iters)

    state, _ = run_loop(shard, cfg, state=state, on_iteration=checkpoint)
    write_outputs(out, shard.idx.cpu(), state["theta"].cpu(), history, cfg, digest)
    add_health(out, data, num_labels, cfg.tam.name)
    print(f"[reweight] wrote {out / 'weights.parquet'} ({len(shard)} weights, {state['iteration']} iterations)")
    return out
