"""The pure checks behind the marker, the fixture and ``assert_no_leaks``, on hand-made records."""

from __future__ import annotations

from dataclasses import replace

import pytest

from memwatch import checks
from memwatch.errors import MemwatchError
from memwatch.records import Finding, Location, StepRecord
from tests.records import make_step

KiB = 1024


def step(
    i: int,
    saved: int = 0,
    *,
    allocated: int | None = None,
    peak: int | None = None,
    saved_peak: int | None = None,
    boundary: str = "optimizer",
) -> StepRecord:
    return make_step(
        i,
        boundary=boundary,
        allocated_bytes=allocated,
        peak_allocated_bytes=peak,
        saved_bytes=saved,
        saved_peak_bytes=saved if saved_peak is None else saved_peak,
        rss_bytes=None,
    )


def leak_finding() -> Finding:
    return Finding(
        kind="graph-accumulation",
        severity="error",
        title="`total` keeps every step's graph",
        detail="the graph behind `total` grows by one loss graph per step",
        first_step=1,
        fix="accumulate `loss.item()` (or `loss.detach()`) instead of `loss`",
        location=Location("train.py", 12, "train"),
        variable="total",
        growth_per_step_bytes=8 * KiB,
    )


def test_growth_above_the_limit_fails_with_the_metric_and_the_limit() -> None:
    # GIVEN saved bytes that grow 8 KiB every step
    steps = [step(i, saved=i * 8 * KiB) for i in range(8)]
    # WHEN the growth is checked against 1 KiB/step
    failure = checks.max_step_growth(steps, [], limit="1KiB", warmup=2)
    # THEN it fails and says what grew, by how much, and the limit
    assert failure is not None
    assert failure.check == "max_step_growth"
    assert "autograd-saved bytes grew +8.0 KiB/step" in failure.message
    assert "limit 1.0 KiB/step" in failure.message


def test_growth_within_the_limit_passes() -> None:
    steps = [step(i, saved=i * 8 * KiB) for i in range(8)]
    assert checks.max_step_growth(steps, [], limit="16KiB", warmup=2) is None


def test_warmup_steps_and_the_closing_partial_step_are_not_judged() -> None:
    # GIVEN memory that jumps during warm-up, stays flat, and a partial end step that is high
    steps = [
        step(0),
        step(1, saved=512 * KiB),
        *(step(i, saved=512 * KiB) for i in range(2, 6)),
        step(6, saved=4096 * KiB, boundary="end"),
    ]
    # WHEN growth is checked with a warm-up of 2 and no tolerance
    failure = checks.max_step_growth(steps, [], limit=0, warmup=2)
    # THEN it passes: only the complete steps 2..5 count, and they are flat
    assert failure is None
    assert checks.measure(steps, 2).judged_steps == 4


def test_allocator_bytes_are_preferred_over_saved_bytes_when_every_step_has_them() -> None:
    # GIVEN allocated bytes growing and saved bytes flat
    steps = [
        step(i, saved=0, allocated=1000 + i * 100 * KiB, peak=2000 + i * 100 * KiB)
        for i in range(6)
    ]
    # WHEN measured
    m = checks.measure(steps, warmup=1)
    # THEN growth and peak come from the allocator
    assert m.metric == "allocated tensor bytes"
    assert m.growth_per_step == 100 * KiB
    assert m.peak == 2000 + 5 * 100 * KiB


def test_too_few_steps_fail_instead_of_passing_silently() -> None:
    # GIVEN a test that recorded only the warm-up steps (e.g. it never called optimizer.step())
    steps = [step(0), step(1)]
    # WHEN growth is checked
    failure = checks.max_step_growth(steps, [], limit="1MiB", warmup=3)
    # THEN it fails and tells how many steps are needed
    assert failure is not None
    assert "cannot judge growth" in failure.message
    assert "at least 5 steps" in failure.message


def test_peak_check_in_both_directions() -> None:
    steps = [step(i, saved=KiB, saved_peak=300 * KiB) for i in range(4)]
    too_high = checks.max_peak(steps, [], limit="256KiB")
    assert too_high is not None
    assert "peaked at 300.0 KiB (limit 256.0 KiB)" in too_high.message
    assert checks.max_peak(steps, [], limit="1MiB") is None


def test_peak_check_without_steps_fails() -> None:
    failure = checks.max_peak([], [], limit="1MiB")
    assert failure is not None
    assert "no step was recorded" in failure.message


def test_forbidden_kind_fails_and_carries_the_finding() -> None:
    finding = leak_finding()
    failure = checks.forbid([step(0)], [finding])
    assert failure is not None
    assert failure.findings == (finding,)
    assert "graph-accumulation" in failure.message


def test_by_default_only_error_findings_of_graph_kinds_fail() -> None:
    # GIVEN a graph kind graded as a warning, and an error of a kind that is not a graph leak
    mild = replace(leak_finding(), kind="graph-retained-in-inference", severity="warning")
    other = replace(leak_finding(), kind="grad-reset-before-step")
    # WHEN checked with the default forbid THEN neither fails the test
    assert checks.forbid([step(0)], [mild, other]) is None
    # BUT naming the kind makes any severity of it fail
    failure = checks.forbid([step(0)], [mild, other], kinds=["graph-retained-in-inference"])
    assert failure is not None
    assert failure.findings == (mild,)


def test_kinds_that_are_not_forbidden_pass() -> None:
    assert checks.forbid([step(0)], [leak_finding()], kinds=["retain-graph-leak"]) is None
    assert checks.forbid([step(0)], [leak_finding()], kinds=[]) is None


def test_a_misspelt_kind_is_refused_rather_than_never_matching() -> None:
    with pytest.raises(MemwatchError, match=r"unknown finding kind.*graph-acumulation"):
        checks.forbid([], [], kinds=["graph-acumulation"])


def test_the_failure_text_names_kind_variable_place_rate_and_fix() -> None:
    # GIVEN a failed forbid check
    finding = leak_finding()
    steps = [step(i) for i in range(6)]
    failure = checks.forbid(steps, [finding])
    assert failure is not None
    # WHEN described for a person
    text = checks.describe([failure], [finding], checks.measure(steps, 3))
    # THEN every fact needed to act on it is there
    assert text.splitlines()[0] == "memwatch: forbidden finding: graph-accumulation"
    for fact in (
        "[graph-accumulation]",
        "variable `total`",
        "train.py:12 in train",
        "+8.0 KiB/step",
        "fix: accumulate `loss.item()`",
    ):
        assert fact in text


def test_the_brief_failure_text_gives_each_finding_one_line() -> None:
    # GIVEN a failed forbid check
    finding = leak_finding()
    steps = [step(i) for i in range(6)]
    failure = checks.forbid(steps, [finding])
    assert failure is not None
    # WHEN described briefly (the full blocks go to the report section)
    text = checks.describe([failure], [finding], checks.measure(steps, 3), brief=True)
    # THEN each finding still carries kind, variable, place, rate and fix on one line
    assert text.splitlines()[2] == (
        "  1. ERROR [graph-accumulation] `total` at train.py:12 (+8.0 KiB/step) - fix: "
        "accumulate `loss.item()` (or `loss.detach()`) instead of `loss`"
    )


def test_every_marker_check_has_a_one_line_docstring_for_the_help() -> None:
    for name, fn in checks.MARKER_CHECKS.items():
        assert fn.__doc__, name
        assert fn.__doc__.splitlines()[0].startswith("Fail when"), name
