"""The package floors of ``src/attmask`` (docs/DESIGN floors): an import only goes down.

Walks every module with ``ast`` (module-level and function-local imports alike) and fails on an
import of a package on the same or a higher floor, so no package cycle can form and none can
hide behind a function-local import. Only the CLI imports lazily (for its start-up time; nothing
imports the CLI, so its lazy imports hide nothing).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "attmask"

#: Floor of each package (a top-level module counts as its own package); lower floors never
#: import higher ones, and packages on one floor do not import each other.
FLOORS = {
    "core": 0,
    "masking": 1,
    "losses": 1,
    "data": 1,
    "config": 2,
    "config_checks": 2,
    "config_sections": 2,
    "models": 3,
    "heads": 4,
    "methods": 5,
    "engine": 6,
    "eval": 6,
    "viz": 6,
    "runs": 7,
    "experiments": 8,
    "cli": 9,
}
#: Modules that form one unit (may import each other).
UNITS = {"config_checks": "config", "config_sections": "config"}
#: Packages allowed to import lazily (inside functions).
LAZY = {"cli"}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__init__" else "attmask"


def _target(path: Path, node: ast.ImportFrom | ast.Import) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        return [node.module or ""]
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)[: -node.level]  # a/b/__init__: a.b
    return [".".join(parts + ([node.module] if node.module else []))]


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` of every attmask import in ``path``."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((t, child.lineno, in_function) for t in _target(path, child) if t.startswith("attmask"))
            visit(child, inside)

    visit(tree, False)
    return found


def _unit(package: str) -> str:
    return UNITS.get(package, package)


def violations() -> list[str]:
    """One line per import that goes up or sideways, or that is lazy outside the CLI."""
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        source = _package(module)
        for target, line, lazy in _imports(path):
            where = f"{path.relative_to(SRC.parent)}:{line} imports {target}"
            wanted = _package(target)
            if source == "attmask":  # the root __init__ (the version) sits below every floor
                problems.append(
                    f"{where}: attmask/__init__.py imports nothing of attmask (every package may import it)"
                )
                continue
            if wanted == "attmask":
                continue  # the root __init__: below every floor
            if wanted not in FLOORS:
                problems.append(f"{where}: package {wanted!r} has no floor in tests/test_layers.py")
                continue
            if lazy and source not in LAZY:
                problems.append(f"{where} inside a function: import it at the top of the module")
            if _unit(wanted) != _unit(source) and FLOORS[wanted] >= FLOORS[source]:
                problems.append(f"{where}: floor {FLOORS[wanted]} from floor {FLOORS[source]} goes up or sideways")
    return problems


def test_every_package_has_a_floor() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.stem for p in SRC.glob("*.py") if p.name != "__init__.py"}
    assert packages | modules == set(FLOORS)


def test_imports_only_go_down() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("source", "text", "expected"),
    [
        ("losses/bad.py", "from attmask.engine.trainer import Trainer\n", "goes up or sideways"),
        ("eval/bad.py", "from attmask.viz import figures\n", "goes up or sideways"),
        ("core/bad.py", "def f():\n    from attmask.core import files\n", "inside a function"),
        ("masking/bad.py", "from ..losses import center\n", "goes up or sideways"),
        ("__init__.py", "from attmask.core import files\n", "imports nothing of attmask"),
    ],
)
def test_the_walker_catches_a_bad_import(tmp_path, monkeypatch, source: str, text: str, expected: str) -> None:
    root = tmp_path / "attmask"
    for package in FLOORS:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / source).write_text(text)
    monkeypatch.setitem(globals(), "SRC", root)
    found = violations()
    assert len(found) == 1 and expected in found[0], found
