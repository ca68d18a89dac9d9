"""The plugin keeps every test's record and message intact: unique run-file names,
one message per bad marker, helper tests in the summary, module globals as holders."""

from __future__ import annotations

import pytest

from memwatch.store import RunReader
from tests.plugin.sources import training_module

pytest_plugins = ["pytester"]


def test_parametrized_tests_keep_one_run_file_each(inner: pytest.Pytester) -> None:
    # GIVEN parametrized ids that differ only in characters a file name cannot hold
    inner.makepyfile(
        test_ids=training_module("""
        @pytest.mark.parametrize("shape", ["a/b", "a b", "a:b", "a*b", "a?b", "a|b"])
        def test_shape(memwatch, shape):
            train(3)
    """)
    )
    # WHEN they run with --memwatch-dir
    inner.runpytest_inprocess("--memwatch-dir", "runs").assert_outcomes(passed=6)
    # THEN every test kept its own run file
    files = sorted((inner.path / "runs").glob("*.db"))
    assert len(files) == 6
    scripts = set()
    for path in files:
        with RunReader(path) as reader:
            scripts.add(reader.info().script)
    assert len(scripts) == 6
    # AND a second session replaces those files (its own runs) rather than failing
    inner.runpytest_inprocess("--memwatch-dir", "runs").assert_outcomes(passed=6)
    assert len(list((inner.path / "runs").glob("*.db"))) == 6


def test_a_bad_marker_prints_its_message_once(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_typo=training_module("""
        @pytest.mark.memwatch(max_growth="1MiB")
        def test_keyword_typo():
            pass
    """)
    )
    result = inner.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    # (the one-line "short test summary info" may repeat it, depending on terminal width)
    failure = out.split("short test summary info")[0]
    assert failure.count("@pytest.mark.memwatch(max_growth): unknown keyword") == 1
    assert "During handling of the above exception" not in out


def test_tests_that_use_assert_no_leaks_appear_in_the_summary(inner: pytest.Pytester) -> None:
    # GIVEN a clean and a leaking test that use the assert_no_leaks helper
    inner.makepyfile(
        test_helper=training_module("""
        from memwatch.testing import assert_no_leaks

        LOSSES = []
        model, opt, x = make()

        def step(keep):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if keep:
                LOSSES.append(loss)

        def test_clean_helper():
            assert_no_leaks(lambda: step(False), steps=6, warmup=2)

        def test_module_level_leak():
            assert_no_leaks(lambda: step(True), steps=8, warmup=2)
    """)
    )
    # WHEN the suite runs with --memwatch
    result = inner.runpytest_inprocess("--memwatch")
    # THEN a loss kept in a list at module level of the test file is a leak
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*graph-accumulation*`LOSSES` keeps the autograd graphs*"])
    # AND both helper tests are rows of the summary table, with their steps
    result.stdout.fnmatch_lines(
        [
            "*memwatch: tests by memory*",
            "*test_module_level_leak*8*graph-accumulation*",
            "*test_clean_helper*6*-*",
        ]
    )
