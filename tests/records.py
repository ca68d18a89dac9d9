"""The one StepRecord factory of the suite: a healthy CPU step, overridden field by field."""

from __future__ import annotations

from typing import Any

from memwatch.records import StepRecord

MiB = 1024 * 1024


def make_step(step: int, **fields: Any) -> StepRecord:
    """Step ``step`` of a healthy CPU run (no allocator numbers, flat saved bytes).

    Override any ``StepRecord`` field by name; ``saved_peak_bytes`` defaults to
    ``saved_bytes`` (nothing saved beyond what is kept at the step end).
    """
    values: dict[str, Any] = {
        "step": step,
        "started_at": 1000.0 + step,
        "duration_s": 0.01,
        "boundary": "optimizer",
        "allocated_bytes": None,
        "reserved_bytes": None,
        "peak_allocated_bytes": None,
        "device_used_bytes": None,
        "saved_bytes": 0,
        "saved_stale_bytes": 0,
        "rss_bytes": 300 * MiB,
        "forward_calls": 1,
        "backward_calls": 1,
        "oom_events": 0,
    }
    values.update(fields)
    values.setdefault("saved_peak_bytes", values["saved_bytes"])
    return StepRecord(**values)
