"""The list of detectors, one per finding kind, and the function that runs them all.

Each entry is the ``DETECTOR`` a detector module declares: the finding kind it reports,
the evidence kinds (``memwatch.evidence``) it reads, and its rule. ``KINDS`` is what
``forbid=[...]`` accepts; ``rank-imbalance`` compares run files of several ranks and is
run by ``memwatch report`` on a run directory, not here.
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.dedupe import one_cause_once
from memwatch.analysis.detectors import (  # docs/detectors-loop.md, detectors-holders.md
    cudnn_benchmark_dynamic_shapes,
    eval_mode_missing,
    grad_never_reset,
    grad_reset_before_step,
    graph_accumulation,
    graph_retained_in_inference,
    host_memory_growth,
    lingering_step_locals,
    memory_growth,
    microbatch_graph_accumulation,
    oom_retry_loop,  # docs/oom.md
    rank_imbalance,
    retain_graph_leak,
    stale_optimizer_params,
    unbatched_forward,
)
from memwatch.notices import notice
from memwatch.records import Finding, sort_findings

DETECTORS: tuple[Detector, ...] = (
    graph_accumulation.DETECTOR,
    lingering_step_locals.DETECTOR,
    memory_growth.DETECTOR,
    retain_graph_leak.DETECTOR,
    graph_retained_in_inference.DETECTOR,
    eval_mode_missing.DETECTOR,
    microbatch_graph_accumulation.DETECTOR,
    grad_reset_before_step.DETECTOR,
    grad_never_reset.DETECTOR,
    stale_optimizer_params.DETECTOR,
    cudnn_benchmark_dynamic_shapes.DETECTOR,
    unbatched_forward.DETECTOR,
    host_memory_growth.DETECTOR,
    oom_retry_loop.DETECTOR,
)

#: Every finding kind memwatch reports.
KINDS: tuple[str, ...] = (*(d.kind for d in DETECTORS), rank_imbalance.KIND)
_warned: set[str] = set()


def analyze(data: AnalysisInput, strict: bool = False) -> list[Finding]:
    """Every detector's findings, most severe first, each cause once (``dedupe``).

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
            name = detector.kind
            if name not in _warned:
                _warned.add(name)
                notice(f"detector {name} failed ({exc!r}); the other checks still ran")
    return sort_findings(one_cause_once(findings))
