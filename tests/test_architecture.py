"""The package layering docs/architecture.md describes, enforced: each package imports only the
packages below it. Command modules (cli.py, appliance/cli.py) and release.py compose the rest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bootpack"

BASE = {"errors", "progress", "files", "__version__"}  # `from .. import __version__` too
# Top-level module or package -> what else of bootpack it may import (BASE always allowed).
ALLOWED: dict[str, set[str]] = {
    "errors": set(), "progress": set(), "files": set(),
    "external": set(),
    "bundle": set(),
    "spec": {"bundle"},
    "render": {"spec", "bundle"},
    "loaders": {"bundle", "spec"},
    "images": {"spec", "bundle", "external"},
    "compiler": {"spec", "render", "images", "loaders", "bundle", "external"},
    "registry": {"bundle", "external"},
    "appliance": {"spec", "render", "bundle", "images", "external"},
}
COMPOSERS = {"__init__.py", "cli.py", "__main__.py", "release.py", "appliance/cli.py"}


def _imports(path: Path) -> set[str]:
    """Top-level bootpack packages a module imports (relative or absolute)."""
    rel = path.relative_to(PACKAGE)
    depth = len(rel.parts) - 1  # folders below bootpack/
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "bootpack" and len(parts) > 1:
                    found.add(parts[1])
                continue
            up = node.level - 1  # `from .x` stays in this folder
            if up > depth:
                continue
            base = list(rel.parts[:depth - up])
            target = base + (node.module.split(".") if node.module else [])
            if target:
                found.add(target[0])
            else:  # `from .. import x, y` at the top: each name is a module
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "bootpack" and len(parts) > 1:
                    found.add(parts[1])
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_packages_import_only_what_lies_below_them(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    if rel.as_posix() in COMPOSERS:
        return
    top = rel.parts[0].removesuffix(".py")
    assert top in ALLOWED, f"{rel}: new top-level module; add it to ALLOWED and docs/architecture.md"
    wrong = _imports(path) - BASE - ALLOWED[top] - {top}
    assert not wrong, f"{rel} imports {sorted(wrong)}; {top} may import {sorted(ALLOWED[top])}"


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    # The rule can fail: a registry module importing the compiler is caught.
    fake = PACKAGE / "registry" / "__fake_for_test__.py"
    fake.write_text("from ..compiler import build_bundle\nfrom . import client\n")
    try:
        assert _imports(fake) == {"compiler", "registry"}
    finally:
        fake.unlink()
