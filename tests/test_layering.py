"""Data flows one way: each layer imports only the layers below it (docs/architecture.md).

collect (torch hooks) -> evidence/records -> store -> analysis (pure detectors) -> views.
Checked on the source with ``ast`` (every import, including ones inside functions and
under ``TYPE_CHECKING``), so a lazy import cannot sneak a dependency past the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, with ``from a import b`` also counted as ``a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _files(*parts: str) -> list[Path]:
    target = REPO.joinpath(*parts)
    return [target] if target.is_file() else sorted(target.rglob("*.py"))


def _violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in files:
        for module in sorted(_imports(path)):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
                bad.append(f"{shown} imports {module}")
    return bad


PURE = ("torch", "memwatch.collect", "memwatch.session", "memwatch.analysis")

RULES = [
    # collection never imports the watch or the detectors
    (("memwatch", "collect"), ("memwatch.session", "memwatch.analysis")),
    # detectors are pure: no torch, no collection
    (("memwatch", "analysis"), ("torch", "memwatch.collect", "memwatch.session")),
    # the dashboard reads run files only
    (("tui",), ("torch", "memwatch.collect", "memwatch.session")),
    # what both sides share stays below both
    (("memwatch", "evidence.py"), PURE),
    (("memwatch", "records.py"), PURE),
    (("memwatch", "source"), PURE),
    (("memwatch", "store"), PURE),
]


@pytest.mark.parametrize(("where", "forbidden"), RULES, ids=lambda v: "/".join(v))
def test_each_layer_imports_only_what_lies_below_it(
    where: tuple[str, ...], forbidden: tuple[str, ...]
) -> None:
    # GIVEN every Python file of the layer
    files = _files(*where)
    assert files, f"no files under {'/'.join(where)}"
    # THEN none of them imports a layer above it
    assert _violations(files, forbidden) == []


def test_the_rule_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    # GIVEN a module that hides its dependencies inside a function and TYPE_CHECKING
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from memwatch.session import Watch\n"
        "def f():\n    from memwatch import analysis\n    import torch.nn\n"
    )
    # THEN each one is reported
    assert _violations([sneaky], ("memwatch.session", "memwatch.analysis", "torch")) == [
        f"sneaky.py imports {m}"
        for m in ("memwatch.analysis", "memwatch.session", "memwatch.session.Watch", "torch.nn")
    ]


def test_the_architecture_table_names_real_files_for_every_kind() -> None:
    # GIVEN docs/architecture.md's table "finding kind -> evidence -> gathered -> decided"
    from memwatch.analysis.registry import KINDS

    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `") and "detectors/" in line]
    kinds = {row.split("`")[1] for row in rows}
    # THEN every finding kind has a row, and every file a row names exists
    assert kinds == set(KINDS)
    for row in rows:
        for cell in row.split("|"):
            for path in cell.split("`")[1::2]:
                if path.endswith(".py"):
                    assert (REPO / "memwatch" / path).is_file(), (row, path)
