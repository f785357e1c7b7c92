"""Third-party messages a successful run prints that say nothing is wrong, silenced at their source.

A user reads WARNING and ERROR lines in a run that worked as a failure. Each entry of ``BENIGN``
names a message that vLLM, Ray or torch prints on every start of this project's deliberate setup
(CPU engines in eager fp32, no Triton CPU backend) and why it is harmless here; everything else,
real warnings included, still reaches the terminal. ``--verbose`` turns all of this off.

The switches are the libraries' own: a logging filter on the ``vllm`` logger (through vLLM's
``VLLM_LOGGING_CONFIG_PATH``, which its engine subprocesses read too), logger levels, a warnings
filter and torch's C++ log level in the environment engine actors inherit, Ray's worker setup hook
for the ``ray.llm`` logger, and transformers' progress-bar switch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

# (message start, why it is benign here)
BENIGN: list[tuple[str, str]] = [
    ("This model does not officially support disabling chunked prefill", "CPU engines disable it on purpose"),
    ("Enforce eager set, disabling torch.compile", "CPU engines run eager on purpose (faster start)"),
    ("Inductor compilation was disabled by user settings", "follows from eager mode"),
    ("Triton is not installed. triton-cpu is expected", "no Triton CPU wheel for this platform"),
    ("Triton is installed, but doesn't include CPU backend", "torch's Triton is the GPU build"),
    ("Reset SSM cache type to float32", "SmolLM2 has no SSM layers"),
    ("Model Runner V2 requires Triton", "the V1 runner is the CPU path"),
    ("libtcmalloc is not found in LD_PRELOAD", "an allocator hint; the engine runs without it"),
    ("libiomp is not found in LD_PRELOAD", "an OpenMP hint; the engine runs with torch's own"),
    ("Passing raw prompts to InputProcessor is deprecated", "vLLM's note on a plain-text prompt"),
    (
        "[shutdown] Process manager: force killing remaining process",
        "a replica's engine core that outlived its 5 s grace at the end of the run; stopped either way",
    ),
    ("No cloud storage mirror configured", "the model is local"),
    (
        "The global random seed is set to",
        "the CPU replicas' in-core worker seeds its engine-core process; rows have their own seeds",
    ),
    ("Token authentication is enabled for this Ray cluster", "the private local cluster's default"),
]
_PATTERN = re.compile("|".join(re.escape(start) for start, _ in BENIGN))

# Python warnings raised inside vLLM's import on every engine process: (message start, category).
WARNING_FILTERS = [("`torch.distributed.reduce_op` is deprecated", "FutureWarning")]


VERBOSE_ENV = "SUNGEN_RAY_VERBOSE"


def set_verbose(verbose: bool) -> None:
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    quiet_this_process()


def is_verbose() -> bool:
    """The one switch, read from the environment so Ray workers and engine subprocesses inherit it."""
    return os.environ.get(VERBOSE_ENV, "0") == "1"


class BenignFilter(logging.Filter):
    """Drops the ``BENIGN`` messages unless the run is verbose (the environment switch)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if is_verbose():
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to hide
            return True
        return not _PATTERN.search(message)


def vllm_logging_config(path: Path) -> Path:
    """vLLM's console logging (its own format, WARNING and up) with ``BenignFilter`` on its logger."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"benign": {"()": f"{__name__}.BenignFilter"}},
        "formatters": {
            "vllm": {"format": "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s", "datefmt": "%X"}
        },
        "handlers": {
            # on the handler: a logger's own filters skip what its child loggers (vllm.*) propagate
            "vllm": {
                "class": "logging.StreamHandler",
                "formatter": "vllm",
                "stream": "ext://sys.stdout",
                "filters": ["benign"],
            },
        },
        "loggers": {"vllm": {"handlers": ["vllm"], "level": "WARNING", "propagate": False}},
    }
    text = json.dumps(config, indent=1)
    if not (path.is_file() and path.read_text() == text):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def engine_env(filtered_config: bool = True) -> dict[str, str]:
    """Environment for engine actors (their vLLM subprocesses inherit it). Verbose: vLLM's INFO.

    ``filtered_config``: point vLLM at our logging config file, which exists on this host only; vLLM
    refuses to start an engine whose config file is missing, so engines that may run on another
    node get the level alone (a few benign notes more, never a failed start)."""
    if is_verbose():
        return {"VLLM_LOGGING_LEVEL": "INFO"}
    env = {
        "VLLM_LOGGING_LEVEL": "WARNING",
        "PYTHONWARNINGS": ",".join(f"ignore:{message}:{category}" for message, category in WARNING_FILTERS),
        "TORCH_CPP_LOG_LEVEL": "ERROR",  # c10's one-off "NUMA binding: Using MEMBIND policy" note
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar in each engine
    }
    if filtered_config:
        path = Path(tempfile.gettempdir()) / f"sungen-ray-{os.getuid()}" / "vllm-logging.json"
        env["VLLM_LOGGING_CONFIG_PATH"] = str(vllm_logging_config(path))
    return env


def setup_worker() -> None:
    """Ray's worker setup hook: the same filters in every Ray worker process of a local run."""
    if is_verbose():
        return
    _quiet_loggers()


def _quiet_loggers() -> None:
    import sys

    benign = BenignFilter()
    # vLLM configures its logger only when an engine starts; what it logs on import before that
    # (the Triton notes) went to Ray's root handler. The same handler vLLM would install, filtered.
    vllm = logging.getLogger("vllm")
    if not vllm.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s", "%X"))
        handler.addFilter(benign)
        vllm.addHandler(handler)
        vllm.setLevel(logging.WARNING)
        vllm.propagate = False
    # ray.llm gives each of its module loggers an INFO console handler unless "ray.llm" has one
    llm = logging.getLogger("ray.llm")
    if not llm.handlers:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.addFilter(benign)
        llm.addHandler(handler)
        llm.setLevel(logging.WARNING)
        llm.propagate = False


def quiet_this_process() -> None:
    """In the driver (or a CLI process): the loggers above, transformers' bars, and the engine
    environment, so vLLM imported here (Ray Data's planning imports it) is filtered too."""
    if is_verbose():
        return
    _quiet_loggers()
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    for key, value in engine_env().items():
        if key != "VLLM_LOGGING_LEVEL":
            os.environ.setdefault(key, value)
    import builtins
    import warnings

    for message, category in WARNING_FILTERS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=getattr(builtins, category))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars of the scorer and encoders
    except ImportError:
        pass
