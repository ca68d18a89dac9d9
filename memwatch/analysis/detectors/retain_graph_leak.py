"""``retain-graph-leak``: ``backward(retain_graph=True)`` keeps graphs alive step after step.

Evidence (``retain-graph-backward`` events, one per step with such a backward): where the
call is and on which tensor, plus, at that step's end, the autograd-saved bytes saved in
earlier steps that are still alive (``stale_bytes``) and the part saved two or more steps
earlier (``old_bytes``).

Why this rule: a *legitimate* ``retain_graph=True`` (two backwards through a shared trunk
in one step, a gradient penalty) leaves at most the current step's graph alive, which is
gone once the next step rebinds ``loss``: ``old_bytes`` stays 0 and ``stale_bytes`` flat.
A leak keeps every step's saved activations, so both grow with each step. Two rises in
a row plus surviving two-step-old bytes already separate the cases, which lets the
finding appear within a few steps of the leak's start.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import (
    per_step_latest,
    rising_run_start,
    site,
    theil_sen,
)
from memwatch.evidence import RetainGraphBackward
from memwatch.records import Finding
from memwatch.units import format_size

KIND = "retain-graph-leak"
_TAIL = 16  # consecutive retain-steps judged (the most recent ones)
_MIN_RISE_FRACTION = 0.75


def detect(data: AnalysisInput) -> list[Finding]:
    events = data.observed(RetainGraphBackward)
    steps = per_step_latest(events)
    if len(steps) < 3:
        return []
    tail = steps[-_TAIL:]
    stale = [e.evidence.stale_bytes for e in tail]
    rises = [b > a for a, b in pairwise(stale)]
    if sum(rises) < 2 or not (rises[-1] and rises[-2]):
        return []
    if sum(rises) < _MIN_RISE_FRACTION * len(rises):
        return []
    last = tail[-1]
    old = last.evidence.old_bytes
    if old <= 0:
        return []  # nothing saved two steps ago survives: graphs are freed, only lagging

    every = [e.evidence.stale_bytes for e in steps]
    start = rising_run_start(every)
    run = steps[start:]
    growth = theil_sen([e.step for e in run], every[start:])
    first_step = run[0].step
    # The call site seen most often (a loop may have more than one backward).
    counts = Counter((e.location, e.evidence.variable) for e in events)
    (location, variable), _ = counts.most_common(1)[0]
    first = next(e for e in events if (e.location, e.evidence.variable) == (location, variable))
    _, variable = site(first)
    func = first.evidence.function
    call = (
        f"{variable}.backward(retain_graph=True)"
        if func == "backward" and variable
        else f"{func}(..., retain_graph=True)"
    )
    held = stale[-1]
    where = f" at {location}" if location else ""
    title = f"`{call}` keeps every step's graph alive ({format_size(growth, signed=True)}/step)"
    detail = (
        f"After each backward with retain_graph=True{where}, the graph and the activations "
        f"it saved stay alive into the following steps: autograd-saved memory from earlier "
        f"steps grew from {format_size(every[start])} at step {first_step} to "
        f"{format_size(held)} at step {last.step}, and {format_size(old)} of it was saved "
        "two or more steps earlier, so the graphs are never freed."
    )
    fix = (
        f"Call `{variable or 'loss'}.backward()` without `retain_graph=True`; if PyTorch "
        "then says it would backward through the graph a second time, `.detach()` the "
        "tensor carried over from the previous step (or call backward once on the summed "
        "losses)."
    )
    return [
        Finding(
            kind=KIND,
            severity="error",
            title=title,
            detail=detail,
            first_step=first_step,
            fix=fix,
            location=location,
            variable=variable,
            bytes=held,
            growth_per_step_bytes=int(growth) if growth > 0 else None,
            evidence={
                "retain_backward_steps": len(steps),
                "calls_in_last_step": last.evidence.calls,
                "stale_bytes": stale,
                "steps": [e.step for e in tail],
                "old_bytes": old,
                "saved_before_last_backward": last.evidence.saved_before,
                "call": call,
            },
        )
    ]


DETECTOR = Detector(KIND, (RetainGraphBackward,), detect)
