"""The house's layers, as the folders show them, and the one way imports point:

    core  <-  net, extract, store  <-  run  <-  views  <-  cli

(views reads the store and needs no engine; run does not know how its results
are shown). A module may import its own layer and the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "fetcher"
ALLOWED = {
    "core": {"core"},
    "net": {"core", "net"},
    "extract": {"core", "extract"},
    "store": {"core", "store"},
    "run": {"core", "net", "extract", "store", "run"},
    "views": {"core", "store", "views"},
    "cli": {"core", "net", "extract", "store", "run", "views", "cli"},
}


def layer_of(module: str) -> str | None:
    """'fetcher.net.download' -> 'net'; None for what is not in a layer."""
    parts = module.split(".")
    return parts[1] if parts[0] == "fetcher" and len(parts) > 1 and parts[1] in ALLOWED else None


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def forbidden_imports(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        here = layer_of(".".join(relative.parts))
        if here is None:
            continue
        for module in sorted(imported_modules(path)):
            there = layer_of(module)
            if there is not None and there not in ALLOWED[here]:
                problems.append(f"{relative}.py ({here}) imports {module} ({there})")
    return problems


def test_every_module_lives_in_a_layer():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(ALLOWED)


def test_imports_point_one_way_only():
    assert forbidden_imports() == []


def test_a_forbidden_import_is_caught(tmp_path):
    """The check itself can fail: a store module that imports the engine."""
    for layer in ALLOWED:
        (tmp_path / "fetcher" / layer).mkdir(parents=True)
    (tmp_path / "fetcher" / "store" / "sneaky.py").write_text("from fetcher.run.pipeline import Pipeline\n")
    (tmp_path / "fetcher" / "core" / "fine.py").write_text("from fetcher.core.outcomes import Outcome\n")
    assert forbidden_imports(tmp_path / "fetcher") == [
        "fetcher/store/sneaky.py (store) imports fetcher.run.pipeline (run)",
        "fetcher/store/sneaky.py (store) imports fetcher.run.pipeline.Pipeline (run)",
    ]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_says_what_it_is(layer):
    assert ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text(encoding="utf-8")))
