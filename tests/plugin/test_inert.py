"""A suite that does not use memwatch pays nothing for having it installed."""

from __future__ import annotations

import resource

import pytest

pytest_plugins = ["pytester"]

#: Written by the inner session at its end: what the plugin left loaded.
REPORTER = """
import json, sys
from pathlib import Path

def pytest_sessionfinish(session):
    pm = session.config.pluginmanager
    Path("state.json").write_text(json.dumps({
        "plugin": pm.has_plugin("memwatch"),
        "runner": pm.get_plugin("memwatch-runner") is not None,
        "torch": "torch" in sys.modules,
    }))
"""

TRIVIAL = """
import pytest

@pytest.mark.parametrize("i", range(200))
def test_trivial(i):
    assert i + 1 > i
"""


@pytest.mark.slow
def test_an_unrelated_suite_imports_no_torch_and_registers_no_per_test_hooks(
    inner: pytest.Pytester,
) -> None:
    # GIVEN a suite that never mentions memwatch, in a fresh interpreter
    inner.makeconftest(REPORTER)
    inner.makepyfile(test_trivial=TRIVIAL)
    # WHEN it runs with the plugin installed
    result = inner.runpytest_subprocess("-q")
    # THEN the plugin was loaded, yet neither torch nor the per-test hooks were
    result.assert_outcomes(passed=200)
    state = (inner.path / "state.json").read_text()
    assert state == '{"plugin": true, "runner": false, "torch": false}'


@pytest.mark.slow
def test_the_plugin_adds_no_measurable_time_to_an_unrelated_suite(
    inner: pytest.Pytester, record_property: pytest.RecordProperty
) -> None:
    # GIVEN 200 trivial tests
    inner.makepyfile(test_trivial=TRIVIAL)

    def cpu_seconds(*args: str) -> float:
        """CPU time of the pytest child process: unlike wall time, barely moved by load."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        inner.runpytest_subprocess("-q", *args).assert_outcomes(passed=200)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    # WHEN the suite runs with the plugin and with it switched off, interleaved, best of 3
    with_plugin, without = [], []
    for _ in range(3):
        with_plugin.append(cpu_seconds())
        without.append(cpu_seconds("-p", "no:memwatch"))
    ratio = min(with_plugin) / min(without)
    record_property("memwatch_overhead_ratio", round(ratio, 3))
    print(
        f"200 trivial tests: {min(with_plugin):.3f}s CPU with memwatch, "
        f"{min(without):.3f}s without, ratio {ratio:.3f}"
    )
    # THEN the difference is lost in the noise of process start-up. The bound is loose on
    # purpose (shared CI machines): what it catches is a plugin that starts doing work at
    # load, e.g. importing torch (seconds); the exact guarantees are asserted above.
    assert ratio < 1.5
