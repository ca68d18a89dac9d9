"""Helpers for the training-loop detector tests: hand-made records and sample lines."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memwatch.analysis import AnalysisInput
from memwatch.records import Event, Finding, Location, RunInfo, StepRecord
from tests.helpers import SAMPLES
from tests.records import make_step

MiB = 1024 * 1024


def step(
    n: int,
    *,
    rss: int | None = 300 * MiB,
    saved: int = 0,
    saved_peak: int = 0,
    stale: int = 0,
    forwards: int = 1,
    backwards: int = 1,
    boundary: str = "optimizer",
    allocated: int | None = None,
) -> StepRecord:
    """A step record with healthy defaults; override what the story is about."""
    return make_step(
        n,
        boundary=boundary,
        allocated_bytes=allocated,
        peak_allocated_bytes=allocated,
        saved_bytes=saved,
        saved_peak_bytes=max(saved_peak, saved),
        saved_stale_bytes=stale,
        rss_bytes=rss,
        forward_calls=forwards,
        backward_calls=backwards,
    )


def event(
    kind: str, n: int, data: Mapping[str, Any], where: tuple[str, int] | None = ("train.py", 10)
) -> Event:
    location = Location(where[0], where[1], "main") if where else None
    return Event(kind, n, 1000.0 + n, dict(data), location)


def run_info(device_type: str = "cpu") -> RunInfo:
    return RunInfo(
        id="test",
        script="train.py",
        argv=("train.py",),
        started_at=1000.0,
        python="3.11",
        torch="2.13.0",
        device_type=device_type,
        device_name="test",
        device_total_bytes=None,
        pid=1,
        host="test",
    )


def analysis(
    steps: list[StepRecord],
    events: Sequence[Event] = (),
    *,
    final: bool = True,
    device_type: str = "cpu",
    warmup: int = 3,
) -> AnalysisInput:
    return AnalysisInput(
        steps=tuple(steps),
        events=tuple(events),
        info=run_info(device_type),
        warmup=warmup,
        final=final,
    )


def line_of(sample: str, text: str) -> int:
    """The 1-based line of ``samples/<sample>`` that starts with ``text`` (exactly one)."""
    lines = (SAMPLES / sample).read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if line.strip().startswith(text)]
    assert len(hits) == 1, f"{text!r} found on lines {hits} of {sample}"
    return hits[0]


def of_kind(findings: list[Finding], kind: str) -> list[Finding]:
    return [f for f in findings if f.kind == kind]


def problems(findings: list[Finding]) -> list[str]:
    """Warnings and errors as readable strings (for assertion messages)."""
    return [f"{f.kind}: {f.title}" for f in findings if f.severity in ("error", "warning")]


#: The kinds fed by ``LoopProbe`` (docs/detectors-loop.md).
LOOP_KINDS = frozenset(
    {
        "retain-graph-leak",
        "graph-retained-in-inference",
        "eval-mode-missing",
        "microbatch-graph-accumulation",
        "grad-reset-before-step",
        "grad-never-reset",
        "cudnn-benchmark-dynamic-shapes",
        "unbatched-forward",
        "stale-optimizer-params",
        "host-memory-growth",
    }
)


def loop_problems(findings: list[Finding]) -> list[str]:
    """Warnings and errors of the loop kinds only (healthy-noise stories about them)."""
    return [p for p in problems(findings) if p.split(":", 1)[0] in LOOP_KINDS]


def at(finding: Finding) -> tuple[str, int]:
    assert finding.location is not None, f"{finding.kind} has no location"
    return Path(finding.location.file).name, finding.location.line


@contextmanager
def cudnn_benchmark_restored() -> Iterator[None]:
    """Samples may flip the global cudnn.benchmark flag; put it back for the next test."""
    import torch

    before = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
