"""The dashboard benchmark runs end to end on a small run (the real one uses 1M steps)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.tui.runs import REPO

pytestmark = pytest.mark.timeout(120)


def test_the_benchmark_measures_open_follow_and_zoom_on_a_small_run():
    # WHEN the benchmark runs on 3000 steps with three follow refreshes
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "tui_bench.py"), "--steps", "3000",
         "--refreshes", "3", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    # THEN it reports every number, each a plausible duration
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout)
    assert numbers["steps"] == 3000
    for key in ("open_first_draw_s", "open_exact_draw_s", "refresh_total_median_s",
                "zoom_pan_median_s"):  # fmt: skip
        assert 0 < numbers[key] < 30, key
