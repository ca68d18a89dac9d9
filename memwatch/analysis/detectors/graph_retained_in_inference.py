"""``graph-retained-in-inference``: forwards with grad enabled whose graph no backward uses.

Evidence (``forward-without-backward`` events, one per step that had such forwards):
how many root forwards built a graph that no backward reached by the step's end (known
exactly from a hook on the output's ``grad_fn``), the bytes they saved for backward, how
much of that was alive at once, and what was still alive at the step end.

A forward counts only when it is clearly evaluation, not a training trick: the model was
in eval mode, or several such forwards ran in one step, or the step had no backward at
all (an inference-only script). One train-mode forward per training step whose output is
not part of the loss (a frozen feature extractor read through hooks) stays silent.

Severity: **error** when the graphs pile up (several alive at once within an evaluation
pass, or saved bytes from earlier steps growing from step to step), **warning** when each
graph is freed right away and only raises the peak.
"""

from __future__ import annotations

from itertools import pairwise

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import code, per_step_latest, site, theil_sen
from memwatch.evidence import ForwardWithoutBackward, Observed, Oom
from memwatch.records import Finding, Severity
from memwatch.units import format_size

KIND = "graph-retained-in-inference"
FIX = (
    "Wrap the evaluation in `with torch.no_grad():` (or `torch.inference_mode()`) so that "
    "no graph is built and no activations are saved."
)


def _qualifies(seen: Observed[ForwardWithoutBackward]) -> bool:
    data = seen.evidence
    return data.eval_mode_forwards > 0 or data.forwards >= 2 or data.step_backwards == 0


def _piled_up(seen: Observed[ForwardWithoutBackward]) -> bool:
    """Several graphs of one pass alive together (outputs kept in a list, summed ...)."""
    data = seen.evidence
    n = data.measured_forwards
    total = data.bytes
    peak = data.peak_alive_bytes
    return n >= 2 and total > 0 and peak >= 0.5 * total and peak >= 2 * total / n


def detect(data: AnalysisInput) -> list[Finding]:
    # A forward cut short by an OOM never reaches its backward: that is the OOM's story
    # (oom-retry-loop), not evaluation with grad enabled.
    oom_steps = {e.step for e in data.observed(Oom)}
    events = [
        e
        for e in per_step_latest(data.observed(ForwardWithoutBackward))
        if _qualifies(e) and e.step not in oom_steps
    ]
    if not events:
        return []
    first = events[0]
    location, variable = site(first)
    forwards = sum(e.evidence.forwards for e in events)
    model = first.evidence.model or "the model"
    callee = first.evidence.callee
    # Bytes come from the steps that counted saved tensors (sampling): the others say how
    # many forwards ran, not what they saved (their byte fields are 0, never read as such).
    counted = [e for e in events if e.evidence.measured_forwards > 0]
    pass_bytes = max((e.evidence.bytes for e in counted), default=0)

    piled = [e for e in counted if _piled_up(e)]
    # Across steps: what survives each step end keeps growing (an inference loop that
    # keeps its outputs). The closing partial step comes after the script's loop, when its
    # locals may be gone: not part of the trend.
    trend = [e for e in counted if e.evidence.boundary != "end"] or counted
    stale = [e.evidence.stale_at_end for e in trend]
    tail = stale[-16:]
    rises = [b > a for a, b in pairwise(tail)]
    growing = len(rises) >= 2 and rises[-1] and rises[-2] and sum(rises) >= 0.75 * len(rises)

    growth = None
    severity: Severity
    if growing:
        tail_events = trend[-len(tail) :]
        slope = theil_sen([e.step for e in tail_events], tail)
        growth = int(slope) if slope > 0 else None
        held = tail[-1]
        severity = "error"
        title = (
            f"Forwards of {code(callee, model)} without backward keep their graphs: "
            f"{format_size(held)} of saved activations piled up"
        )
    elif piled:
        worst = max(piled, key=lambda e: e.evidence.peak_alive_bytes)
        held = worst.evidence.peak_alive_bytes
        severity = "error"
        title = (
            f"{worst.evidence.measured_forwards} forwards of {code(callee, model)} with grad "
            f"enabled kept {format_size(held)} of graphs alive at once, no backward used them"
        )
    else:
        severity = "warning"
        ran = (
            f"{forwards} forward{'s' if forwards != 1 else ''} of {code(callee, model)} ran with "
            "grad enabled and no backward"
        )
        if counted:
            held = max(e.evidence.bytes // max(1, e.evidence.measured_forwards) for e in counted)
            title = f"{ran}: ~{format_size(held)} saved for nothing each"
        else:
            held = 0
            title = f"{ran}: autograd saved activations for nothing"
    where = f" at {location}" if location else ""
    mode = first.evidence.eval_mode_forwards
    detail = (
        f"{forwards} forward pass{'es' if forwards != 1 else ''}{where} over "
        f"{len(events)} step{'s' if len(events) != 1 else ''} ran with grad enabled "
        f"({'in eval mode' if mode else 'in train mode'}) and no backward reached their "
        "outputs, so autograd saved activations for nothing"
    )
    if counted:
        detail += f" (up to {format_size(pass_bytes)} in one step)."
    else:
        detail += (
            ". How much was not measured: those steps did not count saved tensors "
            "(sampling); the next steps do."
        )
    if growing:
        detail += (
            f" Saved bytes from earlier steps still alive grew to {format_size(tail[-1])}: "
            f"{code(variable, 'the outputs')} keep the graphs."
        )
    elif piled:
        detail += f" {code(variable, 'The outputs')} held the graphs together."
    return [
        Finding(
            kind=KIND,
            severity=severity,
            title=title,
            detail=detail,
            first_step=first.step,
            fix=FIX,
            location=location,
            variable=variable,
            bytes=held or None,
            growth_per_step_bytes=growth,
            evidence={
                "steps": [e.step for e in events[-16:]],
                "forwards": forwards,
                "eval_mode_forwards": sum(e.evidence.eval_mode_forwards for e in events),
                "largest_pass_bytes": pass_bytes if counted else None,
                "peak_alive_bytes": (
                    max(e.evidence.peak_alive_bytes for e in counted) if counted else None
                ),
                "bytes_counted_steps": len(counted),
                "stale_at_end": tail,
                "model": model,
            },
        )
    ]


DETECTOR = Detector(KIND, (ForwardWithoutBackward, Oom), detect)
