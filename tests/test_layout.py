"""The package layout (issue 9): an acyclic import graph, no library import of the ``jobs``
recipes, no loose top-level modules, a thin driver entry point, and a README Layout section that
names only paths that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sungen_ray"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (lazy imports count:
    a cycle through them is still a cycle in the design)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: {m for m in _imports(path, name) if m in mods and m != name} for name, path in mods.items()}


def _package_graph() -> dict[str, set[str]]:
    """The same edges between subpackages (``sungen_ray.tam`` -> ``sungen_ray.parallel``)."""

    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for m, deps in _graph().items():
        graph.setdefault(top(m), set()).update(top(d) for d in deps if top(d) != top(m))
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise _Cycle(stack[stack.index(n) :] + [n])
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    try:
        for m in sorted(graph):
            if m not in state:
                visit(m)
    except _Cycle as found:
        return found.args[0]
    return None


class _Cycle(Exception):
    pass


def test_import_graph_has_no_cycles():
    graph = _graph()
    assert len(graph) > 40, "the walk found the package"
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))
    # nor between subpackages (tam/ and reweight/ used to import each other)
    assert _find_cycle(_package_graph()) is None, " -> ".join(_find_cycle(_package_graph()))
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_library_never_imports_jobs():
    offenders = sorted(
        name
        for name, path in _modules().items()
        if any(m == "jobs" or m.startswith("jobs.") for m in _imports(path, name))
    )
    assert offenders == []


def test_no_loose_top_level_modules():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert top == ["__init__.py", "config.py", "errors.py"]


def test_driver_entry_point_is_thin():
    lines = (ROOT / "jobs" / "sungen_pipeline.py").read_text().splitlines()
    assert len(lines) <= 30, f"jobs/sungen_pipeline.py has {len(lines)} lines; the library is sungen_ray.pipeline"


def test_readme_layout_names_the_tree():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Layout\n+```text\n(.*?)```", text, re.S).group(1)
    named, parents = set(), []
    for line in block.splitlines():
        entry = line.split("  ")[0].rstrip() if not line.startswith(" ") else line.strip().split("  ")[0]
        depth = (len(line) - len(line.lstrip(" "))) // 2
        parents = parents[:depth]
        for item in entry.split(", "):
            path = "/".join([*parents, item.rstrip("/")])
            assert (ROOT / path).exists(), f"README Layout names {path}, which does not exist"
            named.add(path)
        if entry.endswith("/"):
            parents.append(entry.rstrip("/"))
    packages = {str(p.parent.relative_to(ROOT)) for p in PKG.glob("*/__init__.py")}
    assert packages <= named, f"README Layout misses {sorted(packages - named)}"


def test_no_library_file_is_git_ignored():
    """A package named like a build directory (``dist/``, ``build/``) is ignored by git and left out
    of a Ray job's uploaded working dir: the job then fails with ModuleNotFoundError."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        import pytest

        pytest.skip("not a git checkout")
    files = [str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *files], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert ignored.split() == []
