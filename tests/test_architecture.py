"""Specification of the package's shape (CONTRIBUTING.md): one folder per concept, imports flowing one way, no
private name crossing a folder, small modules. The layering itself is import-linter's contract in pyproject.toml."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "preflight"
FOLDERS = {
    "_util",
    "check",
    "cli",
    "course",
    "experiments",
    "init",
    "lightning",
    "jax",
    "nn",
    "normalize",
    "propagation",
    "report",
    "torch",
}
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "data.py", "tour.py"}
#: "No file over ~450 lines" (issue #11); a module about one concept reads in one sitting below that.
MAX_LINES = 450


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def folder_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else ""


def test_the_top_level_holds_only_folders_and_the_entry_points() -> None:
    entries = {p.name for p in PACKAGE.iterdir() if p.name not in {"__pycache__", "py.typed"}}
    assert {e for e in entries if e.endswith(".py")} == TOP_LEVEL_MODULES
    assert {e for e in entries if not e.endswith(".py")} == FOLDERS


@pytest.mark.parametrize("folder", sorted(FOLDERS - {"_util", "cli"}))
def test_every_concept_folder_names_its_public_api(folder: str) -> None:
    init = PACKAGE / folder / "__init__.py"
    tree = ast.parse(init.read_text())
    assert ast.get_docstring(tree), f"{folder}/__init__.py says what the folder is"
    names = [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if hasattr(t, "id")]
    assert "__all__" in names or folder in {"report", "experiments"}


def test_no_module_is_over_the_size_limit() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_no_private_name_crosses_a_folder() -> None:
    crossings = []
    for path in modules():
        here = folder_of(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("preflight"):
                continue
            parts = node.module.split(".")
            there = parts[1] if len(parts) > 1 else ""
            if there == here:
                continue
            private_module = any(p.startswith("_") and p != "_util" for p in parts[1:])
            private_names = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
            if private_module or private_names:
                crossings.append(f"{path.relative_to(PACKAGE)}: from {node.module} import {private_names or '...'}")
    assert crossings == []


LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (extra dev)")
def test_the_layers_contract_holds() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parents[1],
    )
    assert result.returncode == 0, result.stdout[-3000:]
