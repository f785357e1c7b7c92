"""Connecting to Ray the same way locally and under ``ray job submit``, and how loud it is.

Under a job (``RAY_ADDRESS`` set) or on a cluster node we join the existing cluster. Locally we
start a private one, with at least ``min_cpus`` logical CPUs: engine replicas each hold a CPU for
their lifetime, and the light Ray Data stages around them must still be schedulable.

By default Ray Data's per-operator progress and the INFO logs of Ray and vLLM are off, so the
terminal shows our own progress lines; warnings and errors still come through. ``--verbose`` (or
``verbose: true`` in a driver config) brings everything back. The switch is an environment
variable so Ray workers started later (engine actors) inherit it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sungen_ray.errors import SungenError
from sungen_ray.parallel.quiet import engine_env, is_verbose, quiet_this_process


def engine_log_env() -> dict[str, str]:
    """Environment for engine actors: how loud vLLM is there (``quiet.engine_env``), with the
    filtered logging config only where every node shares this host's files."""
    return engine_env(filtered_config=all_nodes_on_this_host())


def all_nodes_on_this_host() -> bool:
    """True for our private local cluster (or one whose every node runs here, as in tests); False when
    we joined a cluster by address, where nodes may come and go on other hosts."""
    import ray

    if os.environ.get("RAY_ADDRESS"):
        return False
    if not ray.is_initialized():  # ensure_ray will start the private local cluster
        return True
    here = ray.util.get_node_ip_address()
    return all(n["NodeManagerAddress"] == here for n in ray.nodes() if n.get("Alive"))


def quiet_ray_data() -> None:
    """In this (driver) process: Ray Data progress bars and operator-status logs follow the switch."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    verbose = is_verbose()
    ctx.enable_progress_bars = verbose
    ctx.enable_operator_progress_bars = verbose
    ctx.print_on_execution_start = verbose
    # ray.data.llm's row column (``__data``) has no Arrow type, so Ray pickles it; that was already
    # the default, saying so silences its warning. Cost measured at ~0.15 ms a row (docs/RESULTS.md).
    ctx.enable_fallback_to_arrow_object_ext_type = True
    level = logging.INFO if verbose else logging.WARNING
    for name in ("ray.data", "ray.llm", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(level)
    # its one warning is "progress bars disabled. To enable, ...": what we just asked for
    logging.getLogger("ray.data._internal.progress").setLevel(logging.WARNING if verbose else logging.ERROR)


# Ray starts its worker processes at nice 15 so that its daemons stay responsive on a busy node. On
# our private cluster the workers are the engine replicas and Ray Train workers, the CPU-heavy part,
# and at nice 15 they lost their cores to the driver and Ray's own processes (nice 0) each time one
# woke; with OpenMP threads that wait for each other, one preempted thread stalls the step.
PRIVATE_CLUSTER_SYSTEM_CONFIG = {"worker_niceness": 0}


def ensure_ray(min_cpus: int = 4) -> None:
    import ray

    if ray.is_initialized():
        quiet_ray_data()
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    quiet_this_process()  # before the workers start: they inherit this process's environment
    level = "INFO" if is_verbose() else "WARNING"
    # Workers (engine actors, Ray Data tasks) log at this level too; vLLM's own logger needs its env.
    logging_config = ray.LoggingConfig(log_level=level)
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=level, logging_config=logging_config)
    else:
        try:
            ray.init(
                address="local",  # a private cluster even when another one runs on this machine
                num_cpus=max(os.cpu_count() or 1, min_cpus),
                include_dashboard=False,
                logging_level=level,
                logging_config=logging_config,
                log_to_driver=True,
                runtime_env={"worker_process_setup_hook": "sungen_ray.parallel.quiet.setup_worker"},
                _system_config=PRIVATE_CLUSTER_SYSTEM_CONFIG,
            )
        except Exception as exc:  # Ray raises a bare Exception when its node fails to start
            if "timed out during startup" not in str(exc):
                raise
            raise SungenError(local_start_failure()) from exc
    quiet_ray_data()


def local_start_failure() -> str:
    """Why a private local Ray did not start, with the cause Ray's own error leaves out: the raylet
    exits when its dashboard agent (a Python process) is slower to start than it waits for, which
    happens on a loaded machine (ray-project/ray#65983); the reason is only in the raylet's log."""
    reason, log = "", None
    try:
        from ray._common.utils import get_default_ray_temp_dir

        found = (Path(get_default_ray_temp_dir()) / "session_latest").resolve() / "logs" / "raylet.out"
        fatal = [line for line in found.read_text(errors="replace").splitlines() if "Check failed:" in line]
        log = found
        if fatal:
            reason = fatal[-1].split("Check failed:", 1)[1].strip()[:300]
    except (ImportError, OSError):  # a Ray without that helper, or no log: the advice still holds
        pass
    cause = f" (its log {log}" + (f" says: {reason})" if reason else ")") if log else ""
    return (
        "Ray could not start a local cluster: its raylet did not come up" + cause + ". On a loaded "
        "machine Ray's dashboard agent can start slower than the raylet waits for it. Run again when the "
        "load is lower, or start Ray once yourself (ray start --head) and run with RAY_ADDRESS=auto to join it."
    )


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


# Memory one CPU engine replica may take (SmolLM2-135M fp32 weights, 2 GiB KV cache, the process).
GIB_PER_CPU_REPLICA = 4.0


def default_cpus_per_replica(engine: str, replicas: int | None) -> int:
    """Cores (math threads) per CPU engine replica when the user set none. vLLM on our own machine:
    its cores shared among the replicas, all of them in one when the count is unset too (with the
    replicas' top-p mask and in-core worker, one 2-CPU replica beat two 1-CPU ones on the 2-core
    machine, docs/RESULTS.md). 1 on a cluster we joined, whose nodes are not this machine, and for
    the transformers fallback, which decodes one batch at a time per replica."""
    if engine != "vllm" or os.environ.get("RAY_ADDRESS"):
        return 1
    return max(1, (os.cpu_count() or 1) // (replicas or 1))


def machine_replicas(cpus_per_replica: int) -> int:
    """CPU engine replicas this machine can run: one per ``cpus_per_replica`` cores, as many as its
    memory holds."""
    cores = os.cpu_count() or 1
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem_gib = GIB_PER_CPU_REPLICA
    return max(1, min(cores // cpus_per_replica, int(mem_gib // GIB_PER_CPU_REPLICA)))


def cluster_replicas(cpus_per_replica: int, use_gpu: bool, local_guess: int) -> int:
    """Replicas when the user set none: one per GPU on a GPU cluster; on a cluster we joined, its CPUs
    (less one for the light stages around the engines); on our private local cluster, ``local_guess``."""
    import ray

    resources = ray.cluster_resources()
    if use_gpu:
        return max(1, int(resources.get("GPU", 1)))
    if os.environ.get("RAY_ADDRESS"):
        return max(1, (int(resources.get("CPU", 1)) - 1) // cpus_per_replica)
    return local_guess
