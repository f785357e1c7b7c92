"""Submit the sungen-ray driver to a Ray cluster as a Ray job, and follow it to the end.

This is ``ray job submit`` with the checks that save a wasted cluster round trip done locally first:
the config must be inside the working dir that gets uploaded (the job resolves ``--config`` there),
the runtime_env file must parse and use fields Ray knows (a typo such as ``exclude:`` is otherwise
ignored and the whole ``.venv`` gets uploaded), and the dashboard address must answer. Errors are
``SungenError`` naming the file or address, so the CLI prints one line instead of a traceback.

Ray is imported inside the functions that need it, so ``sungen-ray --help`` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from sungen_ray.config import load_yaml
from sungen_ray.errors import SungenError

if TYPE_CHECKING:
    from ray.job_submission import JobStatus, JobSubmissionClient

DRIVER_MODULE = "jobs.sungen_pipeline"
DEFAULT_DASHBOARD_PORT = 8265
# Ray lets these environment variables override an explicit address; an explicit --address must win.
_ADDRESS_ENV_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def build_entrypoint(config: str) -> str:
    """The shell command the job runs on the head node, from the root of the uploaded working dir."""
    return f"python -m {DRIVER_MODULE} --config {shlex.quote(config)}"


def normalize_address(address: str) -> str:
    """Turn ``HEAD:8265`` or ``http://HEAD:8265/`` into the dashboard URL the jobs API lives at.

    Ray itself treats a bare ``host:port`` as a GCS address and asks that port for the dashboard,
    which fails obscurely when it is given the dashboard port; here a bare address means HTTP.
    """
    address = address.strip().rstrip("/")
    if not address:
        raise SungenError("--address is empty: pass the Ray dashboard URL, e.g. http://HEAD:8265")
    if "://" not in address:
        address = f"http://{address}"
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SungenError(
            f"--address {address!r}: expected the Ray dashboard URL, e.g. http://HEAD:{DEFAULT_DASHBOARD_PORT}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise SungenError(f"--address {address!r}: {exc}") from exc
    return address


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast, naming the address, when nothing listens there (Ray's client would hang or say less)."""
    parts = urlsplit(address)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise SungenError(
            f"cannot reach the Ray dashboard at {address}: {exc}. Is the head running, and is its dashboard port "
            f"reachable from here (e.g. `kubectl port-forward svc/<cluster>-head-svc 8265:8265`)?"
        ) from exc


@contextlib.contextmanager
def _explicit_address() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in _ADDRESS_ENV_VARS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(address: str) -> JobSubmissionClient:
    """A JobSubmissionClient for ``address`` (dashboard URL), with connection failures as SungenError."""
    address = normalize_address(address)
    check_reachable(address)
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        with _explicit_address():
            return JobSubmissionClient(address)
    except AuthenticationError as exc:
        raise SungenError(
            f"the Ray dashboard at {address} requires a token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
            f"(or RAY_AUTH_TOKEN_PATH, default ~/.ray/auth_token) to the cluster's token. Ray said: {exc}"
        ) from exc
    except (ConnectionError, RuntimeError, OSError) as exc:
        raise SungenError(f"cannot use the Ray jobs API at {address}: {exc}") from exc


def load_runtime_env(path: str | Path | None) -> dict[str, Any]:
    """Read and validate a runtime_env YAML file; ``None`` gives an empty runtime env."""
    if path is None:
        return {}
    env = load_yaml(path, "runtime env file", " (working_dir, pip, env_vars, ...)")

    from ray.runtime_env import RuntimeEnv

    known = sorted(RuntimeEnv.known_fields)
    for key in env:
        if key not in RuntimeEnv.known_fields:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = (
                f" (did you mean {close[0]!r}?)"
                if close
                else f"; known fields: {', '.join(k for k in known if not k.startswith('_'))}"
            )
            raise SungenError(f"{path}: unknown runtime env field {key!r}{hint}")
    try:
        RuntimeEnv(**env)
    except (TypeError, ValueError) as exc:
        raise SungenError(f"{path}: invalid runtime env: {exc}") from exc
    return env


def _is_uri(value: str) -> bool:
    return "://" in value


def resolve_working_dir(working_dir: str | None, runtime_env: dict[str, Any]) -> str:
    """The working dir to upload: ``--working-dir`` wins over the file's, then ``.``.

    A local path (resolved against the current directory, as ``ray job submit`` does) must be a
    directory; a remote URI (``s3://``, ``https://...zip``) is passed through unchecked.
    """
    chosen = working_dir if working_dir is not None else runtime_env.get("working_dir", ".")
    if _is_uri(chosen):
        return chosen
    path = Path(chosen).expanduser().resolve()
    if not path.is_dir():
        raise SungenError(f"working dir not found (or not a directory): {chosen}")
    return str(path)


def resolve_config(config: str, working_dir: str) -> str:
    """The ``--config`` value as the job will see it: relative to the root of the uploaded working dir.

    A relative path must exist inside a local working dir. An absolute path inside it is made
    relative. An absolute path that does not exist here is taken to be a path on the cluster
    (shared storage) and passed through. A remote working dir cannot be checked from here.
    """
    if _is_uri(working_dir):
        return config
    root = Path(working_dir)
    given = Path(config).expanduser()
    if given.is_absolute():
        if not given.exists():
            print(f"note: {config} does not exist here; assuming it is a path on the cluster", file=sys.stderr)
            return config
        try:
            rel = given.resolve().relative_to(root)
        except ValueError:
            raise SungenError(
                f"config file {config} is outside the working dir {working_dir}, so the job would not see it: "
                f"move it under the working dir or pass a relative path"
            ) from None
        return rel.as_posix()
    if not (root / given).is_file():
        raise SungenError(
            f"config file not found: {config} (looked in the working dir {working_dir}; the job resolves --config "
            f"relative to the uploaded working dir)"
        )
    return given.as_posix()


def prepare_job(
    config: str, *, working_dir: str | None = None, runtime_env: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """Check everything that can be checked locally; return the driver entrypoint and the runtime env.

    The runtime env's ``working_dir`` is set to the resolved one (``working_dir`` argument, else the
    runtime env's, else ``.``), and ``config`` is rewritten relative to it by :func:`resolve_config`.
    """
    env = dict(runtime_env or {})
    env["working_dir"] = resolve_working_dir(working_dir, env)
    return build_entrypoint(resolve_config(config, env["working_dir"])), env


def submit(
    client: JobSubmissionClient,
    entrypoint: str,
    runtime_env: dict[str, Any] | None = None,
    *,
    submission_id: str | None = None,
) -> str:
    """Submit ``entrypoint`` (uploading a local working_dir) and return the job id."""
    from ray.exceptions import RayError

    try:
        return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env or {}, submission_id=submission_id)
    except (ConnectionError, RuntimeError, OSError, ValueError, RayError) as exc:
        raise SungenError(f"job submission failed: {exc}") from exc


async def _tail(client: JobSubmissionClient, job_id: str, out: TextIO) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def wait(
    client: JobSubmissionClient,
    job_id: str,
    *,
    out: TextIO | None = None,
    poll_s: float = 1.0,
    timeout_s: float | None = None,
) -> JobStatus:
    """Block until the job ends and return its final status; stream its logs to ``out`` if given.

    Streaming uses the log-tail websocket, which closes when the job ends. If the stream breaks
    early (a proxy timing out an idle connection), status polling finishes the wait.
    """
    import aiohttp

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if out is not None:
        try:
            asyncio.run(asyncio.wait_for(_tail(client, job_id, out), timeout_s))
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            raise SungenError(f"job {job_id} did not finish within {timeout_s:.0f} s") from None
        except (RuntimeError, OSError, aiohttp.ClientError) as exc:
            print(f"note: log stream ended early ({exc}); polling the job status", file=sys.stderr)
    while True:
        try:
            status = client.get_job_status(job_id)
        except (RuntimeError, OSError) as exc:
            raise SungenError(f"lost contact with the cluster while waiting for job {job_id}: {exc}") from exc
        if status.is_terminal():
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise SungenError(f"job {job_id} did not finish within {timeout_s:.0f} s (still {status.value})")
        time.sleep(poll_s)


def failure_message(client: JobSubmissionClient, job_id: str) -> str:
    """Ray's one-line reason for a failed or stopped job (empty when it gives none)."""
    try:
        return client.get_job_info(job_id).message or ""
    except (ConnectionError, RuntimeError, OSError):
        return ""
