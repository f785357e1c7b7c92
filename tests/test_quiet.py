"""Known-benign third-party messages are silenced at their source and ``--verbose`` brings them
back (issue 23): a real vLLM import in a fresh process, with the environment engine actors get."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from sungen_ray.parallel import quiet

# what vLLM's CPU platform logs through its configured logger at every engine start
PROBE = """
import logging, sys
from sungen_ray.parallel.quiet import quiet_this_process
quiet_this_process()
from vllm.logger import init_logger
log = init_logger("vllm.platforms.cpu")
log.warning("Triton is not installed. triton-cpu is expected on x86 CPUs.")
log.warning("KV cache space is too small: a real warning")
# an engine start applies vLLM's logging config (ours, from VLLM_LOGGING_CONFIG_PATH, when quiet)
from vllm.config.logging import LoggingConfig
from vllm.logger import configure_logging
configure_logging(LoggingConfig())
log.warning("Reset SSM cache type to float32 for accelerated GDN mamba backend 'none'.")
log.warning("Chunked prefill is broken: a second real warning")
import warnings
warnings.warn("`torch.distributed.reduce_op` is deprecated, please use ReduceOp", FutureWarning)
"""


def _run(verbose: bool) -> str:
    env = {**os.environ, "SUNGEN_RAY_VERBOSE": "1" if verbose else "0"}
    for key in ("VLLM_LOGGING_CONFIG_PATH", "PYTHONWARNINGS", "TORCH_CPP_LOG_LEVEL"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_benign_vllm_notes_are_dropped_and_real_warnings_kept():
    out = _run(verbose=False)
    assert "KV cache space is too small" in out and "a second real warning" in out
    assert "Triton is not installed" not in out and "Reset SSM cache" not in out
    assert "reduce_op" not in out


def test_verbose_brings_everything_back():
    out = _run(verbose=True)
    assert "Triton is not installed" in out and "KV cache space is too small" in out
    assert "Reset SSM cache" in out
    assert "reduce_op" in out


def test_filter_matches_only_listed_message_starts(monkeypatch):
    monkeypatch.setenv("SUNGEN_RAY_VERBOSE", "0")
    f = quiet.BenignFilter()

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("vllm", logging.WARNING, __file__, 1, msg, None, None)

    assert not f.filter(record("Model Runner V2 requires Triton; using the V1 model runner instead."))
    assert f.filter(record("Model Runner failed to start"))
    monkeypatch.setenv("SUNGEN_RAY_VERBOSE", "1")
    assert f.filter(record("Model Runner V2 requires Triton; using the V1 model runner instead."))


def test_engine_processes_get_no_loading_bars(monkeypatch):
    """The environment engine actors start with turns off transformers' weight-loading bars there."""
    monkeypatch.setenv("SUNGEN_RAY_VERBOSE", "0")
    env = {**os.environ, **quiet.engine_env()}
    probe = "from transformers.utils import logging; print(logging.is_progress_bar_enabled())"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_engines_on_a_joined_cluster_get_no_local_config_file(monkeypatch):
    """vLLM refuses to start when VLLM_LOGGING_CONFIG_PATH names a missing file, and our file exists
    on this host only: engines of a cluster joined by address (other hosts) get the level alone."""
    from sungen_ray.parallel import ray_runtime

    monkeypatch.setenv("SUNGEN_RAY_VERBOSE", "0")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    joined = ray_runtime.engine_log_env()
    assert "VLLM_LOGGING_CONFIG_PATH" not in joined and joined["VLLM_LOGGING_LEVEL"] == "WARNING"
    monkeypatch.delenv("RAY_ADDRESS")
    local = ray_runtime.engine_log_env()
    assert os.path.isfile(local["VLLM_LOGGING_CONFIG_PATH"])
