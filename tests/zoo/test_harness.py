"""The zoo harness judges findings the way samples/zoo/README.md says, and reads ZOO dicts safely.

These stories use hand-made findings, so they pin the rules (found, named, false alarm)
independently of what today's detectors report on the zoo.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memwatch.records import Finding, Location
from tests.zoo.test_zoo import zoo


def finding(kind: str, severity: str = "error", **kw: object) -> Finding:
    return Finding(
        kind=kind,
        severity=severity,
        title=str(kw.pop("title", kind)),
        detail=str(kw.pop("detail", "")),
        first_step=0,
        fix="",
        **kw,
    )


def write_case(tmp_path: Path, group: str, body: str, slug: str = "case") -> Path:
    path = tmp_path / group / f"{slug}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def bug(tmp_path: Path, zoo_dict: str) -> object:
    return zoo.load_case(write_case(tmp_path, "bugs", f"x = 1\nZOO = {zoo_dict}\n"))


def test_a_bug_is_found_only_by_its_kind_at_warning_or_error(tmp_path):
    # GIVEN a bug case expecting graph-accumulation (memory-growth also accepted)
    case = bug(tmp_path, '{"expect": "graph-accumulation", "also_ok": ["memory-growth"]}')
    # WHEN judged against various findings THEN only the right kinds above info count
    assert zoo.judge(case, [finding("graph-accumulation")]).found
    assert zoo.judge(case, [finding("memory-growth", "warning")]).found
    assert not zoo.judge(case, [finding("graph-accumulation", "info")]).found
    assert not zoo.judge(case, [finding("eval-mode-missing", "warning")]).found
    assert not zoo.judge(case, []).found


def test_named_needs_the_culprit_in_the_text_or_the_line_at_the_location(tmp_path):
    # GIVEN a bug whose culprit is `stats['loss']` stored by the line `stats['loss'] += loss`
    src = write_case(tmp_path, "src", "stats = {}\nstats['loss'] += loss\n", slug="train")
    case = bug(
        tmp_path,
        '{"expect": "graph-accumulation", "culprit": "stats", "line": "stats[\'loss\'] +="}',
    )
    at_line_2 = Location(file=str(src), line=2, function="main")
    at_line_1 = Location(file=str(src), line=1, function="main")
    # WHEN the finding names the variable, or points at the storing line THEN it is named
    assert zoo.judge(case, [finding("graph-accumulation", variable="stats")]).named
    assert zoo.judge(case, [finding("graph-accumulation", location=at_line_2)]).named
    # WHEN it names something else at another line THEN it is found but not named
    other = zoo.judge(case, [finding("graph-accumulation", variable="loss", location=at_line_1)])
    assert other.found and not other.named
    # WHEN the culprit is named by a finding of the wrong kind THEN nothing counts
    assert not zoo.judge(case, [finding("memory-growth", variable="stats")]).named


def test_any_warning_or_error_on_a_control_is_a_false_alarm(tmp_path):
    # GIVEN a fixed twin
    case = zoo.load_case(write_case(tmp_path, "fixed", 'ZOO = {"expect": None}\n'))
    # WHEN judged THEN info is fine, a warning or an error is a false alarm
    assert not zoo.judge(case, [finding("lingering-step-locals", "info")]).false_alarm
    assert zoo.judge(case, [finding("lingering-step-locals", "warning")]).false_alarm
    assert zoo.judge(case, [finding("graph-accumulation", "error")]).false_alarm


@pytest.mark.parametrize(
    ("group", "body", "message"),
    [
        ("bugs", "x = 1\n", "no module-level ZOO"),
        ("bugs", 'ZOO = {"expect": "no-such-kind"}\n', "not a known or proposed kind"),
        ("bugs", 'ZOO = {"expect": "graph-accumulation", "colprit": "x"}\n', "unknown ZOO keys"),
        ("healthy", 'ZOO = {"expect": "graph-accumulation"}\n', "must have expect None"),
        ("bugs", 'ZOO = {"expect": __import__("os").getcwd()}\n', "not a literal"),
    ],
)
def test_a_malformed_zoo_dict_is_refused_without_running_anything(tmp_path, group, body, message):
    # GIVEN a zoo file whose ZOO dict breaks the format WHEN loaded THEN it is refused, unrun
    with pytest.raises(zoo.ZooFormatError, match=message):
        zoo.load_case(write_case(tmp_path, group, body))


def test_a_crashing_case_is_reported_as_broken_not_as_a_miss(tmp_path):
    # GIVEN a bug case whose program raises
    path = write_case(
        tmp_path, "bugs", 'ZOO = {"expect": "graph-accumulation"}\nraise ValueError("boom")\n'
    )
    # WHEN run (in a forked child) THEN the harness says it crashed, with the program's error
    with pytest.raises(zoo.CaseCrashed, match="boom"):
        zoo.run_case(zoo.load_case(path))
