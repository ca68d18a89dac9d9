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


class _Escalated:
    """What ``_due`` asks of the tracker: the sampling escalated (evidence arrived)."""

    escalated = True


def _young_probe_between_scans() -> HoldersProbe:
    probe = HoldersProbe()
    probe._passes = holders_probe.EAGER_START  # past the run's first scans
    probe._stride = 16
    probe._skipped = 2  # not due by its stride
    return probe


def test_evidence_hurries_the_scan_of_a_training_step_only() -> None:
    # GIVEN a probe between two scans, while the sampling is escalated: before the run's
    #       first backward an RL episode ends a provisional step at each of its hundreds
    #       of root forwards, each with evidence (forwards no backward used yet)
    probe = _young_probe_between_scans()
    # WHEN such a step end that is not a training step comes
    # THEN it waits for the stride: a scan there feeds only the holders snapshot
    assert not probe._due(_Escalated(), training=False)  # type: ignore[arg-type]
    # AND a training step end is scanned at once, as the checks need
    assert probe._due(_Escalated(), training=True)  # type: ignore[arg-type]
