"""``sungen-ray submit``: run the pipeline driver as a Ray job on a cluster and follow it.

Equivalent to ``ray job submit --address ADDR --working-dir . [--runtime-env FILE] --
python -m jobs.sungen_pipeline --config CFG``, with the config, runtime env and address checked
before anything is uploaded. The job id goes to stdout (alone, so scripts can capture it); with
``--wait`` (the default) the job's logs follow and the exit code says whether the job succeeded.
"""

from __future__ import annotations

import argparse
import os
import sys

from sungen_ray.errors import SungenError
from sungen_ray.parallel import ray_job


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS"),
        help="Ray dashboard URL, e.g. http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS)",
    )
    parser.add_argument(
        "--config", required=True, help="pipeline config, relative to the working dir (e.g. jobs/configs/sst2.yaml)"
    )
    parser.add_argument(
        "--working-dir",
        default=None,
        help="directory (or remote zip URI) uploaded as the job's working dir (default: the runtime env's, else .)",
    )
    parser.add_argument("--runtime-env", default=None, help="runtime_env YAML file, e.g. cluster/runtime_env.yaml")
    parser.add_argument("--submission-id", default=None, help="job id to use (default: Ray picks raysubmit_...)")
    parser.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream the job's logs until it ends and exit non-zero if it failed (default: --wait)",
    )


def run(args: argparse.Namespace) -> int:
    if not args.address:
        raise SungenError("--address is required (or set RAY_ADDRESS): the Ray dashboard URL, e.g. http://HEAD:8265")
    # Local checks first: a typo in a path should not cost a connection attempt or an upload.
    runtime_env = ray_job.load_runtime_env(args.runtime_env)
    entrypoint, runtime_env = ray_job.prepare_job(args.config, working_dir=args.working_dir, runtime_env=runtime_env)
    address = ray_job.normalize_address(args.address)
    client = ray_job.connect(address)
    job_id = ray_job.submit(client, entrypoint, runtime_env, submission_id=args.submission_id)
    print(job_id, flush=True)
    if not args.wait:
        print(f"follow with: ray job logs --address {address} --follow {job_id}", file=sys.stderr)
        return 0
    try:
        status = ray_job.wait(client, job_id, out=sys.stdout)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; the job keeps running. Stop it with: ray job stop --address {address} {job_id}",
            file=sys.stderr,
        )
        return 130
    message = ray_job.failure_message(client, job_id) if status.value != "SUCCEEDED" else ""
    print(f"job {job_id} {status.value}" + (f": {message}" if message else ""), file=sys.stderr)
    return 0 if status.value == "SUCCEEDED" else 1
