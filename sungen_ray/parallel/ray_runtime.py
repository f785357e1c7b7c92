"""Connecting to Ray the same way locally and under ``ray job submit``.

Under a job (``RAY_ADDRESS`` set) or on a cluster node we join the existing cluster. Locally we
start a private one, with at least ``min_cpus`` logical CPUs: engine replicas each hold a CPU for
their lifetime, and the light Ray Data stages around them must still be schedulable.
"""

from __future__ import annotations

import logging
import os


def ensure_ray(min_cpus: int = 4) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    ray.init(
        num_cpus=max(os.cpu_count() or 1, min_cpus),
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=True,
    )


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0
