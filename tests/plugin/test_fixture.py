"""The ``memwatch`` fixture: a watch around the test body with assertion helpers."""

from __future__ import annotations

import pytest

from tests.plugin.sources import line_of, training_module

pytest_plugins = ["pytester"]

LEAKING = training_module("""
    def test_loss_curve(memwatch):
        model, opt, x = make()
        total = 0
        for _ in range(8):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total = total + loss
        memwatch.assert_no_leaks()
""")


def test_a_leaking_step_fails_with_the_variable_the_line_and_the_fix(
    inner: pytest.Pytester,
) -> None:
    # GIVEN a loop that sums the loss tensors (and so every step's graph) into `total`
    inner.makepyfile(test_leak=LEAKING)
    # WHEN the test runs
    result = inner.runpytest_inprocess()
    # THEN it fails at the user's assert_no_leaks line with the finding: kind, variable,
    # the line that extends it, growth per step, and the fix
    result.assert_outcomes(failed=1)
    leak_line = line_of(LEAKING, "total = total + loss")
    assert_line = line_of(LEAKING, "memwatch.assert_no_leaks()")
    result.stdout.fnmatch_lines(
        [
            ">*memwatch.assert_no_leaks()",
            "E*AssertionError: memwatch: forbidden finding: graph-accumulation",
            "E*(forbid; 8 step(s), warm-up 3; allocated tensor bytes: peak *",
            f"E*1. ERROR [[]graph-accumulation[]] `total` at test_leak.py:{leak_line} "
            "(+* KiB/step) - fix: Accumulate `loss.item()` instead of `loss`*",
            f"test_leak.py:{assert_line}: AssertionError",
        ]
    )
    # AND the test's memwatch section holds the full report and the step numbers
    result.stdout.fnmatch_lines(
        [
            "*- memwatch -*",
            "memwatch: forbidden finding: graph-accumulation",
            "1. ERROR [[]graph-accumulation[]] `total` keeps the autograd graph*",
            f"   test_leak.py:{leak_line} in test_loss_curve · variable `total` · * KiB/step*",
            "   fix: Accumulate `loss.item()` instead of `loss`*",
            "allocated tensor bytes by step:",
        ]
    )
    # AND no memwatch frame is shown: the failure points at the test
    assert "memwatch/testing.py" not in result.stdout.str()


def test_the_fixed_step_passes(inner: pytest.Pytester) -> None:
    # GIVEN the same loop summing Python numbers instead of tensors
    inner.makepyfile(test_fixed=LEAKING.replace("total + loss", "total + loss.item()"))
    # WHEN it runs THEN it passes
    inner.runpytest_inprocess().assert_outcomes(passed=1)


GROWING = training_module("""
    def test_growing(memwatch):
        kept = train(8, cache_bytes=8192)
        memwatch.assert_no_leaks(tolerance="{tolerance}")
""")


@pytest.mark.parametrize(("tolerance", "outcome"), [("1KiB", "failed"), ("16KiB", "passed")])
def test_growth_is_judged_against_the_tolerance(
    inner: pytest.Pytester, tolerance: str, outcome: str
) -> None:
    # GIVEN a step keeping 8 KiB of plain tensors (no graph: only the growth check sees it)
    inner.makepyfile(test_growing=GROWING.replace("{tolerance}", tolerance))
    # WHEN it runs against a tolerance below or above 8 KiB/step
    result = inner.runpytest_inprocess()
    # THEN it fails only below, with the measured growth of live tensor bytes
    result.assert_outcomes(**{outcome: 1})
    if outcome == "failed":
        result.stdout.fnmatch_lines(
            ["E*memwatch: allocated tensor bytes grew +8.0 KiB/step*(limit 1.0 KiB/step)"]
        )


def test_peak_assertion_in_both_directions(inner: pytest.Pytester) -> None:
    # GIVEN one test with a peak limit below what a step allocates, one far above
    inner.makepyfile(
        test_peak=training_module("""
        @pytest.mark.parametrize("limit", ["1KiB", "64MiB"])
        def test_peak(memwatch, limit):
            train(4)
            memwatch.assert_peak_below(limit)
    """)
    )
    # WHEN they run
    result = inner.runpytest_inprocess("-v")
    # THEN only the low limit fails, naming the peak
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_peak?1KiB? FAILED*", "*test_peak?64MiB? PASSED*"])
    result.stdout.fnmatch_lines(["E*memwatch: allocated tensor bytes peaked at * (limit 1.0 KiB)"])


def test_steps_marked_by_hand_are_judged(inner: pytest.Pytester) -> None:
    # GIVEN a loop without an optimizer that marks its steps with memwatch.step()
    inner.makepyfile(
        test_manual=training_module("""
        def test_manual(memwatch):
            model, _, x = make()
            outputs = []
            with torch.no_grad():
                for _ in range(6):
                    outputs.append(model(x))
                    memwatch.step()
            assert len(memwatch.steps) == 6
            memwatch.assert_no_leaks(tolerance=0)
    """)
    )
    # WHEN it runs THEN the kept outputs (128 B a step) fail a zero tolerance
    result = inner.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E*allocated tensor bytes grew +128 B/step*(limit 0 B/step)"])


def test_a_passing_watched_test_reports_its_memory_in_a_memwatch_section(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(
        test_clean=training_module("""
        def test_clean(memwatch):
            train(6)
            memwatch.assert_no_leaks()
    """)
    )
    result = inner.runpytest_inprocess("-rP")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*- memwatch -*",
            "memwatch: 6 step(s), warm-up 3; allocated tensor bytes: peak *, +0 B/step after *",
            "allocated tensor bytes by step:",
            "*step*boundary*at end*peak in step",
        ]
    )
