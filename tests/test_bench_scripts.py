"""The bench scripts stay runnable: every project name they import (also inside functions, which only a
run would reach) exists. They are not run here (they measure; `make bench` runs them)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("epoch_builder", "remote", "console", "tests")


def project_imports(path: Path) -> list[tuple[str, str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] in OURS:
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
    return found


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("*.py")))
def test_every_imported_name_exists(script: str) -> None:
    missing = []
    for module, name, line in project_imports(ROOT / "bench" / script):
        imported = importlib.import_module(module)
        if not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"bench/{script}:{line}: {module} has no {name}")
    assert not missing, "\n".join(missing)
