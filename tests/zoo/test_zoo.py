"""The zoo: every publicly reported bug in samples/zoo is found and named, every control is clean.

GIVEN a reproduction of a publicly reported bug (samples/zoo/bugs), its corrected twin
(samples/zoo/fixed) or a correct program that looks risky (samples/zoo/healthy),
WHEN it runs under ``with memwatch(store=False)`` in this process,
THEN a bug is reported with its expected kind (warning or error) and its culprit named,
and a fixed or healthy program raises no warning or error.

Cases are discovered from the directory (new files join automatically); the cases today's
detectors get wrong are listed, with what memwatch reported instead, in
tests/zoo/known_misses.py and marked ``xfail(strict=True)``. The judging rules live in
benchmarks/zoo.py, which prints the same results as a table with recall numbers.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers import load_benchmark
from tests.zoo.known_misses import KNOWN_MISSES, UNSTABLE

zoo = load_benchmark("zoo.py", "zoo_harness")
CASES = zoo.discover()


def _params() -> list[object]:
    params = []
    for case in CASES:
        marks = []
        reason = KNOWN_MISSES.get(case.key)
        if reason is not None:
            # Only a wrong verdict is expected; a case that crashes still fails the suite.
            marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
        elif case.key in UNSTABLE:
            marks.append(
                pytest.mark.xfail(strict=False, raises=AssertionError, reason=UNSTABLE[case.key])
            )
        params.append(pytest.param(case, id=case.key, marks=marks))
    return params


def _describe(outcome: object) -> str:
    reported = getattr(outcome, "reported", ())
    return "; ".join(f"{r.kind}({r.severity}) {r.variable or ''}: {r.title}" for r in reported)


@pytest.mark.parametrize("case", _params())
def test_zoo_case(case):
    for name in case.frameworks:
        pytest.importorskip(zoo.FRAMEWORK_MODULES.get(name, name))

    outcome = zoo.run_case(case)

    if case.group == "bugs":
        assert outcome.found, (
            f"{case.key}: no {case.expect}; reported: {_describe(outcome) or 'nothing'}"
        )
        assert outcome.named, (
            f"{case.key}: {case.expect} found but the culprit "
            f"({case.culprit or case.line!r}) is not named: {_describe(outcome)}"
        )
    else:
        assert not outcome.false_alarm, f"{case.key}: false alarm: {_describe(outcome)}"


# -- the corpus itself -------------------------------------------------------------------------
def test_the_zoo_has_cases():
    # GIVEN samples/zoo WHEN discovered THEN there are bugs and controls to judge
    groups = {case.group for case in CASES}
    assert groups == {"bugs", "fixed", "healthy"}


def test_every_bug_has_its_fixed_twin_and_every_twin_a_bug():
    bugs = {c.slug for c in CASES if c.group == "bugs"}
    fixed = {c.slug for c in CASES if c.group == "fixed"}
    assert bugs - fixed == set(), "bugs without a fixed twin"
    assert fixed - bugs == set(), "fixed twins without a bug"


def test_slugs_are_unique_between_bugs_and_healthy():
    bugs = {c.slug for c in CASES if c.group == "bugs"}
    healthy = {c.slug for c in CASES if c.group == "healthy"}
    assert bugs & healthy == set()


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_every_case_cites_its_public_source(case):
    # GIVEN a zoo file WHEN its docstring is read THEN it says where the bug was reported
    # (bugs and twins: "Source: <url>"; healthy programs: "Pattern: <url or doc>")
    doc = case.path.read_text(encoding="utf-8")
    label = "Pattern" if case.group == "healthy" else "Source"
    assert re.search(rf"^{label}: \S+", doc, re.MULTILINE), f"{case.key}: no '{label}:' line"
    assert re.search(r"^Shape: \S+", doc, re.MULTILINE), f"{case.key}: no 'Shape:' line"
    assert re.fullmatch(r"[a-z0-9_]+", case.slug), f"{case.key}: slug is not lowercase_words"


def test_known_misses_name_cases_in_the_right_form():
    # GIVEN the known-miss list WHEN read THEN each key is group/slug and each false alarm
    # is labelled as one (so nobody mistakes a false alarm for a miss)
    for key, reason in KNOWN_MISSES.items():
        group, _, slug = key.partition("/")
        assert group in zoo.GROUPS and re.fullmatch(r"[a-z0-9_]+", slug), key
        assert reason.strip(), key
        if group != "bugs":
            assert reason.startswith("FALSE ALARM"), key
