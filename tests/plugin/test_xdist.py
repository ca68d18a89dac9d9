"""Under pytest-xdist each worker watches its own tests; results reach the controller."""

from __future__ import annotations

import pytest

from tests.plugin.sources import training_module

pytest_plugins = ["pytester"]

SUITE = training_module("""
    @pytest.mark.memwatch(max_step_growth="1KiB")
    def test_growing_fails():
        kept = train(6, cache_bytes=8192)

    @pytest.mark.memwatch(max_step_growth="1KiB")
    def test_clean_passes():
        train(6)

    @pytest.mark.parametrize("n", range(4))
    def test_fixture(memwatch, n):
        train(5)
        memwatch.assert_no_leaks()
""")


@pytest.mark.slow
def test_marker_fixture_and_summary_work_across_two_workers(inner: pytest.Pytester) -> None:
    # GIVEN a suite with marked and fixture tests
    inner.makepyfile(test_suite=SUITE)
    # WHEN it runs on two xdist workers with the summary switched on
    result = inner.runpytest_subprocess("-n", "2", "--memwatch")
    # THEN each test gets its verdict, the failure carries its report section, and the
    # controller's summary lists tests run by the workers
    result.assert_outcomes(passed=5, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "memwatch: allocated tensor bytes grew +8.0 KiB/step*(limit 1.0 KiB/step)",
            "*- memwatch -*",
        ]
    )
    table = out.split("tests by memory")[1].split("short test summary")[0]
    assert table.count("test_suite.py::") == 6
    assert table.index("test_growing_fails") < table.index("test_clean_passes")
