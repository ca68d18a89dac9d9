"""``@pytest.mark.memwatch(...)``: thresholds applied by the plugin around the test body."""

from __future__ import annotations

import pytest

from tests.plugin.sources import line_of, training_module

pytest_plugins = ["pytester"]

LEAKING = training_module("""
    @pytest.mark.memwatch
    def test_loss_curve():
        model, opt, x = make()
        total = 0
        for _ in range(8):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total = total + loss
""")


def test_a_leaking_step_fails_the_default_marker_with_variable_and_line(
    inner: pytest.Pytester,
) -> None:
    # GIVEN a marked test whose loop sums loss tensors into `total`
    inner.makepyfile(test_leak=LEAKING)
    # WHEN it runs
    result = inner.runpytest_inprocess()
    # THEN the default forbid fails it, with the finding in the failure and the section,
    # and no traceback into the plugin
    result.assert_outcomes(failed=1)
    leak_line = line_of(LEAKING, "total = total + loss")
    finding = [
        "1. ERROR [[]graph-accumulation[]] `total` keeps the autograd graph*",
        f"   test_leak.py:{leak_line} in test_loss_curve · variable `total` · *KiB/step*",
        "   fix: Accumulate `loss.item()` instead of `loss`*",
    ]
    result.stdout.fnmatch_lines(
        [
            "memwatch: forbidden finding: graph-accumulation",
            "  (forbid; 8 step(s), warm-up 3; allocated tensor bytes: peak *",
            f"  1. ERROR [[]graph-accumulation[]] `total` at test_leak.py:{leak_line} "
            "(+* KiB/step) - fix: Accumulate `loss.item()` instead of `loss`*",
            "(details and step numbers: the 'memwatch' section below)",
            "*- memwatch -*",
            "memwatch: forbidden finding: graph-accumulation",
            *finding,
            "allocated tensor bytes by step:",
        ]
    )
    assert "pytest_plugin.py" not in result.stdout.str()


def test_the_fixed_step_passes_the_default_marker(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_fixed=LEAKING.replace("total + loss", "total + loss.item()"))
    inner.runpytest_inprocess().assert_outcomes(passed=1)


def run_marked(inner: pytest.Pytester, marker_args: str, body: str) -> pytest.RunResult:
    inner.makepyfile(
        test_marked=training_module(f"""
        @pytest.mark.memwatch({marker_args})
        def test_marked():
            {body}
    """)
    )
    return inner.runpytest_inprocess()


#: 8 KiB of plain tensors (no autograd graph) kept every step: only the growth check sees it.
GROWING = "kept = train(8, cache_bytes=8192)"


@pytest.mark.parametrize(
    ("marker_args", "outcome"),
    [('max_step_growth="1KiB"', "failed"), ('max_step_growth="16KiB"', "passed"), ("", "passed")],
    ids=["below", "above", "default-64KiB"],
)
def test_max_step_growth_in_both_directions(
    inner: pytest.Pytester, marker_args: str, outcome: str
) -> None:
    result = run_marked(inner, marker_args, GROWING)
    result.assert_outcomes(**{outcome: 1})
    if outcome == "failed":
        result.stdout.fnmatch_lines(
            [
                "memwatch: allocated tensor bytes grew +8.0 KiB/step over 5 steps "
                "after a warm-up of 3 (limit 1.0 KiB/step)"
            ]
        )


@pytest.mark.parametrize(("limit", "outcome"), [("1KiB", "failed"), ("64MiB", "passed")])
def test_max_peak_in_both_directions(inner: pytest.Pytester, limit: str, outcome: str) -> None:
    result = run_marked(inner, f'max_peak="{limit}"', "train(4)")
    result.assert_outcomes(**{outcome: 1})
    if outcome == "failed":
        result.stdout.fnmatch_lines(
            ["memwatch: allocated tensor bytes peaked at * (limit 1.0 KiB)"]
        )


def test_warmup_decides_which_steps_are_judged(inner: pytest.Pytester) -> None:
    # GIVEN growth from step 0 and a zero limit: failing with the default warm-up ...
    run_marked(inner, "max_step_growth=0", GROWING).assert_outcomes(failed=1)
    # ... WHEN the warm-up leaves fewer than two complete steps
    result = run_marked(inner, "max_step_growth=0, warmup=7", GROWING)
    # THEN the test fails saying it cannot judge, rather than passing unjudged
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot judge growth: 1 complete step(s) after a warm-up of 7*"])


#: A clean loop followed by one forward with grad enabled and no backward: a warning-level
#: graph-retained-in-inference finding.
EVALUATES_WITH_GRAD = "model, opt, x = make(); model(x).sum()"


def test_warning_findings_pass_by_default_and_fail_when_forbidden(inner: pytest.Pytester) -> None:
    run_marked(inner, "", EVALUATES_WITH_GRAD).assert_outcomes(passed=1)
    result = run_marked(inner, 'forbid=["graph-retained-in-inference"]', EVALUATES_WITH_GRAD)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["memwatch: forbidden finding: graph-retained-in-inference"])


def test_an_empty_forbid_list_lets_a_graph_leak_pass(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_leak=LEAKING.replace("@pytest.mark.memwatch", "@pytest.mark.memwatch(forbid=[])")
    )
    inner.runpytest_inprocess().assert_outcomes(passed=1)


def test_a_marker_with_bad_arguments_fails_that_test_with_the_reason(
    inner: pytest.Pytester,
) -> None:
    # GIVEN typos in marker keywords and values, and an unmarked test
    inner.makepyfile(
        test_typo=training_module("""
        @pytest.mark.memwatch(max_growth="1MiB")
        def test_keyword_typo():
            pass

        @pytest.mark.memwatch(forbid=["graph-acumulation"])
        def test_kind_typo():
            pass

        @pytest.mark.memwatch(max_peak="12 parsecs")
        def test_size_typo():
            pass

        def test_other():
            pass
    """)
    )
    # WHEN they run
    result = inner.runpytest_inprocess()
    # THEN only the marked tests fail, each saying what is wrong
    result.assert_outcomes(failed=3, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.memwatch(max_growth): unknown keyword; it takes max_step_growth, "
            "max_peak, forbid, warmup",
        ]
    )
    result.stdout.fnmatch_lines(["*unknown finding kind(s) 'graph-acumulation' in forbid*"])
    result.stdout.fnmatch_lines(["*invalid size '12 parsecs'*"])


def test_marker_and_fixture_share_one_watch(inner: pytest.Pytester) -> None:
    # GIVEN a test using the fixture under a marker that sets the warm-up and a limit
    inner.makepyfile(
        test_both=training_module("""
        @pytest.mark.memwatch(max_step_growth="1KiB", warmup=2)
        def test_both(memwatch):
            assert memwatch.warmup == 2
            kept = train(6, cache_bytes=8192)
    """)
    )
    # WHEN it runs THEN the marker judges the fixture's steps with its warm-up
    result = inner.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*over 4 steps after a warm-up of 2 (limit 1.0 KiB/step)"])


def test_the_marker_help_lists_keywords_defaults_and_what_each_check_does(
    inner: pytest.Pytester,
) -> None:
    result = inner.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.memwatch(max_step_growth='64KiB', max_peak=None, forbid=None, "
            "warmup=3): watch this test's training steps*"
            "max_step_growth: Fail when tensor memory at step end grows more than this per step*"
            "forbid=None means error findings of graph-accumulation, retain-graph-leak, *"
        ]
    )
