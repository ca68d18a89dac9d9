"""The holder scan's stride: its budget holds on short steps, and a short run is still
scanned often enough to see growth that fires no memory signal (collect/holders_probe.py)."""

from __future__ import annotations

import pytest

from memwatch.collect import holders_probe
from memwatch.collect.holders_probe import HoldersProbe


def _stride_at(probe: HoldersProbe, step: int, scan_s: float, step_s: float) -> int:
    probe._step_s = step_s
    probe._scan_s = 0.0
    probe._choose_stride(scan_s, step)
    return probe._stride


@pytest.mark.parametrize(
    ("step", "expected"),
    [(10, holders_probe.EARLY_MAX_STRIDE), (300, 37), (1000, holders_probe.MAX_STRIDE)],
)
def test_a_costly_scan_is_spread_further_as_the_run_grows(step: int, expected: int) -> None:
    # GIVEN a scan that costs twice a 0.5 ms step (its 2 % budget wants a stride of 100)
    probe = HoldersProbe()
    # WHEN the stride is chosen at `step`
    stride = _stride_at(probe, step, scan_s=1e-3, step_s=0.5e-3)
    # THEN a short run keeps the early cap, a longer one an eighth of its steps, up to the
    #      longest stride
    assert stride == expected


def test_a_cheap_scan_keeps_the_short_stride_however_long_the_run() -> None:
    # GIVEN a scan that costs 1 % of a 20 ms step
    probe = HoldersProbe()
    # WHEN the stride is chosen late in a long run
    stride = _stride_at(probe, 10_000, scan_s=0.2e-3, step_s=20e-3)
    # THEN it is the shortest stride: the budget allows it
    assert stride == holders_probe.STRIDE


def test_deep_mode_scans_every_step_however_costly() -> None:
    # GIVEN the deep mode's probe and a scan costing more than the step
    probe = HoldersProbe.for_mode(deep=True)
    # THEN every step is scanned, early or late
    assert _stride_at(probe, 10, 1e-3, 0.5e-3) == 1
    assert _stride_at(probe, 10_000, 1e-3, 0.5e-3) == 1
