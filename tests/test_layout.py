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


def _resolves(module: str, name: str | None) -> bool:
    path = ROOT.joinpath(*module.split("."))
    if name is None:
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
    if _resolves(f"{module}.{name}", None):
        return True
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not source.is_file():
        return False
    tree = ast.parse(source.read_text())
    defined = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return name in defined


def test_scripts_import_only_what_the_library_has():
    """Benchmarks, recipes and tests import library names lazily inside functions too, where a
    module moved by a layout change (bow_step_cpu.py kept ``sungen_ray.reweight.collectives`` after
    it moved to ``parallel``) fails only when someone runs it. An import inside ``try: ... except
    ImportError`` is a deliberate fallback and is skipped."""
    broken = []
    for path in sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("jobs/**/*.py"), *ROOT.glob("tests/*.py")]):
        tree = ast.parse(path.read_text())
        guarded = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.Try)
            and any("ImportError" in ast.unparse(h.type or ast.Name("BaseException")) for h in node.handlers)
            for stmt in node.body + [s for h in node.handlers for s in h.body]
            for inner in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sungen_ray"):
                broken += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{a.name}"
                    for a in node.names
                    if not (_resolves(node.module, None) and _resolves(node.module, a.name))
                ]
            elif isinstance(node, ast.Import):
                broken += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {a.name}"
                    for a in node.names
                    if a.name.startswith("sungen_ray") and not _resolves(a.name, None)
                ]
    assert not broken, "imports of names the library does not have:\n" + "\n".join(broken)
