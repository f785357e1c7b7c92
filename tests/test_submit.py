"""``sungen-ray submit`` against a real local Ray head, plus its local checks (no head needed).

The head is started with the venv's ``ray start --head --block`` in its own session, on free ports
and a private temp dir, bound to 127.0.0.1 and with token auth off, so it neither collides with
another Ray instance on the machine nor depends on ``~/.ray/auth_token``. It is stopped by
signalling exactly the processes in that session (never ``ray stop``, which would also kill any
other Ray instance of this user). ``start_ray_head`` / ``ray_head`` are meant for reuse by other
tests that submit real pipeline configs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from sungen_ray import cli
from sungen_ray.cli import submit as submit_commands
from sungen_ray.errors import SungenError
from sungen_ray.parallel import ray_job as jobs

RAY_BIN = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes in session ``sid``: everything the head started, wherever it re-grouped."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


@dataclasses.dataclass
class RayHead:
    """A local Ray head started by :func:`start_ray_head`; ``address`` is the dashboard (jobs API) URL."""

    address: str
    gcs_address: str
    temp_dir: Path
    process: subprocess.Popen

    def log_tail(self, n: int = 40) -> str:
        log = self.temp_dir / "ray_start.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else ""

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM every process of the head's session, then SIGKILL whatever is still there.

        The raylet does not exit promptly on SIGTERM once the GCS is gone, and nothing here needs a
        graceful shutdown, so the grace period is short. Kill passes repeat until the session is empty,
        in case a process was being started while the previous pass ran.
        """
        sid = self.process.pid
        for sig, wait_s in ((signal.SIGTERM, grace_s), *[(signal.SIGKILL, 2.0)] * 5):
            pids = _session_pids(sid)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _session_pids(sid):
                time.sleep(0.1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_ray_head(num_cpus: int = 2, timeout_s: float = 90.0, extra_env: dict[str, str] | None = None) -> RayHead:
    """Start a private local Ray head with the dashboard and wait until its jobs API answers.

    Raise ``num_cpus`` for pipelines that run ray.data.llm (it deadlocks at 2 logical CPUs).
    """
    # A short path: Ray's unix sockets live under it and socket paths are limited to ~107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    port, dashboard_port = _free_port(), _free_port()
    cmd = [
        str(RAY_BIN),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--dashboard-port={dashboard_port}",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        # Every other port Ray would otherwise take at a fixed default (52365, 10001, ...).
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--node-manager-port={_free_port()}",
        f"--object-manager-port={_free_port()}",
    ]
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        # Keep Ray on loopback: without this it swaps 127.0.0.1 for the machine's routable address.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        # A loopback-only test cluster; with auth on, requests would depend on ~/.ray/auth_token.
        RAY_AUTH_MODE="disabled",
        # Job entrypoints say `python`: make that this venv's interpreter, as an activated venv would.
        PATH=f"{RAY_BIN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    )
    with open(temp_dir / "ray_start.log", "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    head = RayHead(f"http://127.0.0.1:{dashboard_port}", f"127.0.0.1:{port}", temp_dir, process)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{head.address}/api/jobs/", timeout=2) as resp:
                json.load(resp)
            return head
        except (OSError, ValueError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = head.log_tail()
            head.stop()
            raise RuntimeError(f"local Ray head did not come up (rc={process.returncode}):\n{tail}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def ray_head():
    head = start_ray_head(num_cpus=4)  # the demo job's ray.data stages need spare CPUs beside the engine
    try:
        yield head
    finally:
        head.stop()


def _working_dir(root: Path, driver_body: str) -> Path:
    """A tiny repo stand-in: a fake ``jobs/sungen_pipeline.py`` and a config, as the real layout has."""
    (root / "jobs" / "configs").mkdir(parents=True)
    (root / "jobs" / "__init__.py").write_text("")
    (root / "jobs" / "sungen_pipeline.py").write_text(textwrap.dedent(driver_body))
    (root / "jobs" / "configs" / "tiny.yaml").write_text("task: tiny\n")
    return root


def _submit_args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    submit_commands.add_arguments(parser)
    argv = []
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [f"--no-{key}"] if value is False else [flag, str(value)]
    return parser.parse_args(argv)


# ---- against a real head -------------------------------------------------------------------------


@pytest.mark.slow
def test_job_succeeds_and_logs_stream(ray_head, tmp_path, monkeypatch):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "greeting.txt").write_text("hello from job")
    # An explicit address must win over RAY_ADDRESS, which Ray would otherwise prefer.
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:1")
    client = jobs.connect(ray_head.address)
    # The driver reads a file from the uploaded working dir and runs a task on the cluster, as the pipeline does.
    (wd / "driver.py").write_text(
        "import ray\nray.init()\nprint(open('greeting.txt').read(), ray.get(ray.remote(lambda: 6 * 7).remote()))\n"
    )
    job_id = jobs.submit(client, "python driver.py", {"working_dir": str(wd)})
    out = io.StringIO()
    status = jobs.wait(client, job_id, out=out, timeout_s=60)
    assert status.value == "SUCCEEDED", client.get_job_logs(job_id)
    assert "hello from job 42" in out.getvalue()
    assert "hello from job 42" in client.get_job_logs(job_id)


@pytest.mark.slow
def test_cli_runs_driver_module_with_config_and_runtime_env(ray_head, tmp_path, capsys):
    wd = _working_dir(
        tmp_path / "repo",
        """
        import os, sys
        print("driver got", sys.argv[1:], "mark", os.environ.get("SUNGEN_TEST_MARK"))
        """,
    )
    env_file = tmp_path / "runtime_env.yaml"
    env_file.write_text("env_vars:\n  SUNGEN_TEST_MARK: from-runtime-env\nexcludes: [.venv/]\n")
    args = _submit_args(
        address=ray_head.address, config="jobs/configs/tiny.yaml", working_dir=wd, runtime_env=env_file, wait=True
    )
    rc = submit_commands.run(args)
    out = capsys.readouterr()
    assert rc == 0, out
    job_id = out.out.splitlines()[0]
    assert job_id.startswith("raysubmit_")
    assert "driver got ['--config', 'jobs/configs/tiny.yaml'] mark from-runtime-env" in out.out
    assert "SUCCEEDED" in out.err


@pytest.mark.slow
def test_failing_job_gives_nonzero(ray_head, tmp_path, capsys):
    wd = _working_dir(tmp_path / "repo", "import sys\nprint('about to fail')\nsys.exit(3)\n")
    args = _submit_args(address=ray_head.address, config="jobs/configs/tiny.yaml", working_dir=wd)
    assert submit_commands.run(args) == 1
    out = capsys.readouterr()
    assert "about to fail" in out.out
    assert "FAILED" in out.err and "exit code 3" in out.err

    # --no-wait returns at once with the id; the job still fails, as wait() then reports.
    args = _submit_args(address=ray_head.address, config="jobs/configs/tiny.yaml", working_dir=wd, wait=False)
    assert submit_commands.run(args) == 0
    job_id = capsys.readouterr().out.strip()
    client = jobs.connect(ray_head.address)
    assert jobs.wait(client, job_id, timeout_s=60).value == "FAILED"


@pytest.mark.slow
def test_wait_times_out_on_a_running_job(ray_head, tmp_path):
    client = jobs.connect(ray_head.address)
    job_id = jobs.submit(client, "python -c \"print('started', flush=True); import time; time.sleep(60)\"", {})
    try:
        with pytest.raises(SungenError, match=f"job {job_id} did not finish within 5 s"):
            jobs.wait(client, job_id, out=io.StringIO(), timeout_s=5)
    finally:
        client.stop_job(job_id)
    assert jobs.wait(client, job_id, timeout_s=30).value == "STOPPED"


# ---- local checks, no head -----------------------------------------------------------------------


def test_unreachable_address_names_it():
    port = _free_port()  # nothing listens there once the probe socket is closed
    with pytest.raises(SungenError, match=rf"127\.0\.0\.1:{port}"):
        jobs.connect(f"127.0.0.1:{port}")


def test_cli_unreachable_address_is_one_line_error(tmp_path, capsys):
    wd = _working_dir(tmp_path / "repo", "pass\n")
    port = _free_port()
    args = _submit_args(address=f"http://127.0.0.1:{port}", config="jobs/configs/tiny.yaml", working_dir=wd)
    with pytest.raises(SungenError, match=f"cannot reach the Ray dashboard at http://127.0.0.1:{port}"):
        submit_commands.run(args)


def test_missing_config_is_named(tmp_path):
    wd = _working_dir(tmp_path / "repo", "pass\n")
    with pytest.raises(SungenError, match=r"config file not found: jobs/configs/nope\.yaml"):
        jobs.prepare_job("jobs/configs/nope.yaml", working_dir=str(wd))
    entrypoint, env = jobs.prepare_job(str(wd / "jobs/configs/tiny.yaml"), working_dir=str(wd))
    assert entrypoint == "python -m jobs.sungen_pipeline --config jobs/configs/tiny.yaml"
    assert env["working_dir"] == str(wd.resolve())
    outside = tmp_path / "outside.yaml"
    outside.write_text("task: x\n")
    with pytest.raises(SungenError, match="outside the working dir"):
        jobs.prepare_job(str(outside), working_dir=str(wd))


def test_missing_working_dir(tmp_path):
    with pytest.raises(SungenError, match="working dir not found"):
        jobs.prepare_job("c.yaml", working_dir=str(tmp_path / "nope"))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("working_dir: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
        ("exclude: [.venv]\n", "unknown runtime env field 'exclude' \\(did you mean 'excludes'\\?\\)"),
        ("env_vars:\n  A: 1\n", "invalid runtime env"),
        ("pip:\n  packages: [x]\n  bogus: 1\n", "invalid runtime env"),
    ],
)
def test_malformed_runtime_env_names_file(tmp_path, text, match):
    path = tmp_path / "env.yaml"
    path.write_text(text)
    with pytest.raises(SungenError, match=match) as info:
        jobs.load_runtime_env(path)
    assert str(path) in str(info.value)


def test_runtime_env_missing_and_empty(tmp_path):
    with pytest.raises(SungenError, match="runtime env file not found"):
        jobs.load_runtime_env(tmp_path / "none.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert jobs.load_runtime_env(tmp_path / "empty.yaml") == {}
    assert jobs.load_runtime_env(None) == {}


def test_shipped_runtime_env_is_valid():
    env = jobs.load_runtime_env(Path(__file__).resolve().parents[1] / "cluster" / "runtime_env.yaml")
    assert ".venv/" in env["excludes"]


def test_normalize_address():
    assert jobs.normalize_address("127.0.0.1:8265") == "http://127.0.0.1:8265"
    assert jobs.normalize_address(" https://head:443/ ") == "https://head:443"
    for bad in ("", "ray://head:10001", "http://:8265", "http://head:notaport"):
        with pytest.raises(SungenError, match="address"):
            jobs.normalize_address(bad)


def test_entrypoint_quotes_config():
    assert jobs.build_entrypoint("a b.yaml") == "python -m jobs.sungen_pipeline --config 'a b.yaml'"


def test_registered_in_cli():
    module, _help = cli.COMMANDS["submit"]
    assert module == "sungen_ray.cli.submit"
    args = _submit_args(address="http://127.0.0.1:8265", config="c.yaml")
    assert args.wait is True and args.working_dir is None and args.runtime_env is None


# ---- the real driver, submitted as a Ray job ------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
GOLD_SST2 = REPO.parent / "shared" / "data" / "sst2" / "validation.jsonl"


@pytest.mark.slow
def test_demo_config_runs_to_completion_as_a_ray_job(ray_head, default_model, tmp_path):
    """`ray job submit` of the demo config (shrunk with --set) against a real local head."""
    out = tmp_path / "run"
    gold = GOLD_SST2 if GOLD_SST2.is_file() else None
    overrides = [
        f"out={out}",
        f"gold={gold if gold else 'null'}",
        "rounds=[{num_samples: 12}]",
        "generation.engine=transformers",
        "generation.batch_size=12",
        "generation.replicas=2",  # unset, a joined cluster gets one per CPU but one: three on 2 cores
        "reweight.outer_iters=2",
        "final.epochs=1",
        "seeds=[0]",
    ]
    entrypoint = jobs.build_entrypoint("jobs/configs/demo.yaml") + "".join(f" --set '{o}'" for o in overrides)
    runtime_env = {
        "working_dir": str(REPO),
        "excludes": [".venv/", ".git/", "runs/", "tests/", "**/__pycache__/", ".pytest_cache/", ".ruff_cache/"],
        "env_vars": {"PYTHONUNBUFFERED": "1"},
    }
    client = jobs.connect(ray_head.address)
    job_id = jobs.submit(client, entrypoint, runtime_env)
    buf = io.StringIO()
    status = jobs.wait(client, job_id, out=buf, timeout_s=900)
    logs = client.get_job_logs(job_id)
    assert status.value == "SUCCEEDED", logs[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["rounds"][0]["generate"]["kept"] == 12
    assert "sungen" in report["final"]["summary"] and "zerogen" in report["final"]["summary"]
    assert "[pipeline] report:" in logs
    if gold:
        assert "SunGen" in logs and "ZeroGen" in logs
