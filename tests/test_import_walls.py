"""The dependency walls of DESIGN.md, checked on the source: gateway/ never imports server/, server/ never imports
gateway/ or clients/, clients/ import only generated code, generated/ imports nothing hand-written."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"cli", "server", "gateway", "hyphae_client", "tests", "bench", "scripts"}
FORBIDDEN = {
    "gateway": {"server", "cli", "hyphae_client"},
    "server": {"gateway", "cli", "hyphae_client"},
    "clients/python": OURS - {"hyphae_client"},
    "generated/python": OURS,
}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folder_respects_its_import_wall(folder: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[folder])
        for path in sorted((ROOT / folder).rglob("*.py"))
        if imported_roots(path) & FORBIDDEN[folder]
    }
    assert offenders == {}
