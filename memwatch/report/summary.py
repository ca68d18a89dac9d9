"""Per-run numbers every report shows, computed once from the step records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memwatch.records import StepRecord, saved_in_step


@dataclass(frozen=True, slots=True)
class StepSummary:
    count: int
    first_step: int | None
    last_step: int | None
    peak_allocated_bytes: int | None
    final_allocated_bytes: int | None
    peak_reserved_bytes: int | None
    peak_autograd_saved_bytes: int
    final_autograd_saved_bytes: int
    peak_rss_bytes: int | None
    first_rss_bytes: int | None
    final_rss_bytes: int | None
    oom_events: int
    median_step_s: float | None


def _max(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def summarize(steps: Sequence[StepRecord]) -> StepSummary:
    if not steps:
        return StepSummary(0, None, None, None, None, None, 0, 0, None, None, None, 0, None)
    durations = sorted(s.duration_s for s in steps)
    rss = [s.rss_bytes for s in steps if s.rss_bytes is not None]
    return StepSummary(
        count=len(steps),
        first_step=steps[0].step,
        last_step=steps[-1].step,
        peak_allocated_bytes=_max(
            max(v for v in (s.peak_allocated_bytes, s.allocated_bytes) if v is not None)
            if s.peak_allocated_bytes is not None or s.allocated_bytes is not None
            else None
            for s in steps
        ),
        final_allocated_bytes=steps[-1].allocated_bytes,
        peak_reserved_bytes=_max(s.reserved_bytes for s in steps),
        # steps whose saved tensors were not counted (sampling) are left out; 0 only when
        # no step was counted at all
        peak_autograd_saved_bytes=_max(saved_in_step(s) for s in steps) or 0,
        final_autograd_saved_bytes=next(
            (s.saved_bytes for s in reversed(steps) if s.saved_bytes is not None), 0
        ),
        peak_rss_bytes=max(rss) if rss else None,
        first_rss_bytes=rss[0] if rss else None,
        final_rss_bytes=rss[-1] if rss else None,
        oom_events=sum(s.oom_events for s in steps),
        median_step_s=durations[len(durations) // 2],
    )
