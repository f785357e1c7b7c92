"""Shared fixtures: one real local Ray cluster per test session, the embedded default PLM, gold data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sungen_ray.parallel.ray_runtime import PRIVATE_CLUSTER_SYSTEM_CONFIG

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster (4 logical CPUs so engine actors and light stages both fit on 2 cores)."""
    import ray

    os.environ.pop("RAY_ADDRESS", None)
    if not ray.is_initialized():
        # address="local": a private cluster even when another one (a `ray start` head) runs here
        ray.init(
            address="local",
            num_cpus=4,
            include_dashboard=False,
            logging_level="WARNING",
            _system_config=PRIVATE_CLUSTER_SYSTEM_CONFIG,  # workers at the driver's priority, as in a run
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def default_model() -> str:
    """The embedded SmolLM2 converted to safetensors (``make test`` prepares it first)."""
    from sungen_ray.plm.prepare import prepare_default_model

    return str(prepare_default_model())


def gold_path(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"gold data not present: {path}")
    return path


WORKER_NODE = {"num_cpus": 2, "resources": {"worker": 2}, "object_store_memory": 200 * 1024**2}


class MultiNodeCluster:
    """A head (1 CPU, nothing pinned there) and two worker raylets (2 CPUs and ``worker: 2`` each).

    Work that asks for the custom ``worker`` resource lands on a worker node, which a test can then
    remove (a killed raylet, as when a spot node is reclaimed) and replace with a fresh one."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.workers = [cluster.add_node(**WORKER_NODE) for _ in range(2)]
        cluster.wait_for_nodes()

    @property
    def address(self) -> str:
        return self.cluster.address

    def node_of(self, node_id: str):
        return next(n for n in self.workers if n.node_id == node_id)

    def replace(self, node_id: str) -> None:
        """Kill the worker node ``node_id`` (its raylet and every process on it) and add a fresh one."""
        node = self.node_of(node_id)
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)
        self.workers.append(self.cluster.add_node(**WORKER_NODE))

    def restore(self) -> None:
        """Back to two alive worker nodes (after a test removed one without replacing it)."""
        while len(self.workers) < 2:
            self.workers.append(self.cluster.add_node(**WORKER_NODE))
        self.cluster.wait_for_nodes()


@pytest.fixture(scope="module")
def multinode():
    """A real 3-node Ray cluster (``ray.cluster_utils.Cluster``) shared by a module's node-loss tests.

    Any other Ray connection (the session's ``ray_local``) is shut down first and restarted after, so
    later tests find the local cluster they expect."""
    import ray
    from ray.cluster_utils import Cluster

    had_local = ray.is_initialized()
    ray.shutdown()
    os.environ.pop("RAY_ADDRESS", None)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 200 * 1024**2, "include_dashboard": False},
    )
    nodes = MultiNodeCluster(cluster)
    # RAY_ADDRESS for the cluster's own processes: Ray Train's state queries otherwise pick "the
    # latest" of all Ray instances on this machine, which need not be this one
    ray.init(
        address=cluster.address,
        logging_level="WARNING",
        runtime_env={"env_vars": {"RAY_ADDRESS": cluster.address}},
    )
    try:
        yield nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
        if had_local:
            ray.init(
                num_cpus=4,
                include_dashboard=False,
                logging_level="WARNING",
                _system_config=PRIVATE_CLUSTER_SYSTEM_CONFIG,
            )
