"""The holdout list names real zoo cases, each bug with its corrected twin.

GIVEN samples/zoo/HOLDOUT.txt, the fresh cases nobody tunes detectors on (one group/slug
per line, ``#`` comments),
WHEN it is read,
THEN every entry is a zoo file that exists, every holdout bug has its fixed twin listed too,
and no entry is listed twice (a typo would silently drop a case from the measure).
"""

from __future__ import annotations

from pathlib import Path

ZOO = Path(__file__).resolve().parents[2] / "samples" / "zoo"


def _entries() -> list[str]:
    lines = (ZOO / "HOLDOUT.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_holdout_entry_is_a_zoo_file() -> None:
    missing = [entry for entry in _entries() if not (ZOO / f"{entry}.py").is_file()]
    assert missing == []


def test_every_holdout_bug_lists_its_fixed_twin_once() -> None:
    entries = _entries()
    assert len(entries) == len(set(entries))
    bugs = {e.split("/", 1)[1] for e in entries if e.startswith("bugs/")}
    fixed = {e.split("/", 1)[1] for e in entries if e.startswith("fixed/")}
    assert bugs == fixed
    assert len(bugs) >= 16
    assert sum(e.startswith("healthy/") for e in entries) >= 8
