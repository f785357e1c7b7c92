"""The installer hands uv the sources pip would use (tools/install_venv.py): without them uv
resolves from PyPI alone and, where a wheel folder holds the CPU torch build, installs another."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _installer():
    spec = importlib.util.spec_from_file_location("install_venv", ROOT / "tools" / "install_venv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# `pip config list` on the development machine, with an install-section override added.
CONFIG_LIST = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
global.cert='/somewhere/else.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/ignored/by/env'
install.index-url='https://mirror.example/simple'
"""


def test_pip_settings_merge_scopes_as_pip_does():
    settings = _installer().pip_settings(CONFIG_LIST)
    assert settings["cert"] == "/etc/ssl/certs/ca-certificates.crt"  # environment over files
    assert settings["find-links"] == "/opt/wheels"
    assert settings["index-url"] == "https://mirror.example/simple"
    assert settings["extra-index-url"] == "file:///opt/pypi/simple file:///opt/pypi-more/simple"


def test_uv_gets_every_index_wheel_folder_and_constraint():
    installer = _installer()
    flags, env = installer.uv_options(installer.pip_settings(CONFIG_LIST))
    pairs = list(zip(flags[::2], flags[1::2]))
    assert ("--index-strategy", "unsafe-best-match") in pairs
    assert ("--find-links", "/opt/wheels") in pairs
    assert ("--index-url", "https://mirror.example/simple") in pairs
    assert ("--extra-index-url", "file:///opt/pypi/simple") in pairs
    assert ("--extra-index-url", "file:///opt/pypi-more/simple") in pairs
    assert ("--constraint", "/etc/xdg/pip/constraints.txt") in pairs
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "UV_HTTP_TIMEOUT": "180"}


def test_no_configuration_leaves_uv_on_its_defaults():
    installer = _installer()
    flags, env = installer.uv_options(installer.pip_settings(""))
    assert flags == ["--index-strategy", "unsafe-best-match"]
    assert env == {}


def test_installed_packages_carry_their_bytecode():
    """pip compiles bytecode at install, uv only when asked (``--compile-bytecode``). Where
    PYTHONDONTWRITEBYTECODE is set, as on the development machine, a venv without it recompiles
    every module in every process: `import vllm` 8.9-9.2 s instead of 3.5 s, and each engine
    replica's start about 30 s longer in the demo."""
    import importlib.util

    import torch

    assert Path(importlib.util.cache_from_source(torch.__file__)).is_file()
