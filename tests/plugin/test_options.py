"""Command-line and ini options: --memwatch (watch every test + summary), --memwatch-dir."""

from __future__ import annotations

import re

import pytest

from memwatch.commands.common import load_run
from tests.plugin.sources import training_module

pytest_plugins = ["pytester"]

#: Four tests: a graph leak, 8 KiB/step of kept tensors, a clean loop, and no torch at all.
SUITE = training_module("""
    def test_leaking():
        model, opt, x = make()
        total = 0
        for _ in range(6):
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total = total + loss

    def test_growing():
        kept = train(6, cache_bytes=8192)

    def test_clean():
        train(6)

    def test_no_torch():
        assert sum(range(4)) == 6
""")


def test_help_lists_every_option(inner: pytest.Pytester) -> None:
    result = inner.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(
        [
            "memwatch: tensor memory checks for training steps:",
            "*--memwatch *watch every test's tensor memory*",
            "*--memwatch-dir=DIR*",
            "*--memwatch-top=N*",
        ]
    )
    result.stdout.fnmatch_lines(["*memwatch (bool):*", "*memwatch_dir (string):*"])


def test_memwatch_flag_watches_every_test_and_ranks_them(inner: pytest.Pytester) -> None:
    # GIVEN a suite without any memwatch marker or fixture
    inner.makepyfile(test_suite=SUITE)
    # WHEN it runs with --memwatch
    result = inner.runpytest_inprocess("--memwatch")
    # THEN every test passes (the flag observes, it does not judge) and the summary ranks
    # the leak first, then the growth, then the clean loop; the test without torch has no row
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*= memwatch: tests by memory =*",
            "test *steps*peak*growth/step*findings",
            "test_suite.py::test_leaking *6 * graph-accumulation",
            "test_suite.py::test_growing *6 * +8.0 KiB  -",
            "test_suite.py::test_clean *6 * +0 B  -",
            "(memory = allocated tensor bytes; growth after warm-up)",
        ]
    )
    assert "test_no_torch" not in result.stdout.str().split("tests by memory")[1]


def test_the_ini_option_mirrors_the_flag_and_top_limits_the_rows(inner: pytest.Pytester) -> None:
    inner.makeini(
        "[pytest]\naddopts = -p no:cacheprovider -p no:textual-snapshot\n"
        "memwatch = true\nmemwatch_top = 1\n"
    )
    inner.makepyfile(test_suite=SUITE)
    result = inner.runpytest_inprocess()
    result.assert_outcomes(passed=4)
    table = result.stdout.str().split("tests by memory")[1]
    assert "test_leaking" in table
    assert "test_growing" not in table


def test_without_the_flag_there_is_no_summary(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_suite=SUITE)
    result = inner.runpytest_inprocess()
    result.assert_outcomes(passed=4)
    assert "tests by memory" not in result.stdout.str()


def test_memwatch_dir_keeps_a_readable_run_file_per_watched_test(inner: pytest.Pytester) -> None:
    # GIVEN a watched test and a run-file directory
    inner.makepyfile(
        test_kept=training_module("""
        def test_kept(memwatch):
            model, opt, x = make()
            for _ in range(5):
                loss = model(x).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
    """)
    )
    # WHEN it runs with --memwatch-dir
    result = inner.runpytest_inprocess("--memwatch-dir", "runs")
    result.assert_outcomes(passed=1)
    # THEN the directory holds that test's run, with its steps, for memwatch report/tui
    files = sorted((inner.path / "runs").glob("*.db"))
    assert len(files) == 1
    assert re.fullmatch(r"test_kept\.py_test_kept-[0-9a-f]{8}\.db", files[0].name)
    run = load_run(files[0])
    assert len(run.steps) == 5
    assert run.info.script == "test_kept.py::test_kept"


def test_memwatch_flag_gives_way_to_a_watch_the_test_opens_itself(inner: pytest.Pytester) -> None:
    # GIVEN a test that runs its own memwatch() around training
    inner.makepyfile(
        test_own=training_module("""
        from memwatch import memwatch

        def test_own_watch():
            with memwatch(store=False) as mw:
                train(4)
            assert mw.step_count == 4
    """)
    )
    # WHEN the suite runs with --memwatch THEN the test's watch takes over and it passes
    inner.runpytest_inprocess("--memwatch").assert_outcomes(passed=1)
