"""The dashboard stays a reader: no torch, no collectors, nothing that could slow a run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.tui.runs import REPO

FORBIDDEN = ("torch", "memwatch.collect", "memwatch.session")


def test_importing_the_dashboard_does_not_import_torch():
    # GIVEN a fresh interpreter
    code = (
        "import sys, memwatch_tui, memwatch_tui.app, memwatch.commands.live\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' "
        "or m.startswith('memwatch.collect')]\n"
        "print(','.join(bad))\n"
    )
    # WHEN it imports the dashboard and the live launcher
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    # THEN neither torch nor the collectors were loaded
    assert result.stdout.strip() == ""


def test_no_module_of_the_dashboard_imports_torch_or_the_collectors():
    # ``memwatch/__init__`` re-exports the watch API (memwatch.session, which imports torch
    # only when a watch starts); the dashboard must not name it, torch or the collectors.
    for path in [*sorted((REPO / "tui").rglob("*.py")), REPO / "memwatch/commands/live.py"]:
        tree = ast.parse(Path(path).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
