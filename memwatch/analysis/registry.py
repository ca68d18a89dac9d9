"""The list of detectors, one per finding kind, and the function that runs them all."""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors import (  # docs/detectors-loop.md, detectors-holders.md
    cudnn_benchmark_dynamic_shapes,
    eval_mode_missing,
    grad_reset_before_step,
    graph_accumulation,
    graph_retained_in_inference,
    host_memory_growth,
    lingering_step_locals,
    memory_growth,
    microbatch_graph_accumulation,
    oom_retry_loop,  # docs/oom.md
    retain_graph_leak,
    unbatched_forward,
)
from memwatch.notices import notice
from memwatch.records import Finding, sort_findings

DETECTORS: list[Detector] = [
    graph_accumulation.detect,
    lingering_step_locals.detect,
    memory_growth.detect,
    retain_graph_leak.detect,
    graph_retained_in_inference.detect,
    eval_mode_missing.detect,
    microbatch_graph_accumulation.detect,
    grad_reset_before_step.detect,
    cudnn_benchmark_dynamic_shapes.detect,
    unbatched_forward.detect,
    host_memory_growth.detect,
    oom_retry_loop.detect,
]
_warned: set[str] = set()


def analyze(data: AnalysisInput, strict: bool = False) -> list[Finding]:
    """Every detector's findings, most severe first.

    A detector that raises is skipped with one notice: a bug in one check must not
    hide what the others found. ``strict`` (reading a run file, which is untrusted input)
    lets the error through instead, so that a file with values no detector can use is
    refused with one line rather than reported as clean.
    """
    findings: list[Finding] = []
    for detector in DETECTORS:
        try:
            findings.extend(detector(data))
        except Exception as exc:
            if strict:
                raise
            name = getattr(detector, "__module__", repr(detector))
            if name not in _warned:
                _warned.add(name)
                notice(f"detector {name} failed ({exc!r}); the other checks still ran")
    return sort_findings(findings)
