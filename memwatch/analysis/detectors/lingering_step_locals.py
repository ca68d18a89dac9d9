"""``lingering-step-locals``: last step's tensors are still referenced when the next forward starts.

Evidence: ``lingering-locals`` events from ``memwatch.collect.lingering_probe``: at the
first root forward of a step, the variables that still hold the previous step's tensors
(same objects, by weakref), their bytes, the previous step's saved-for-backward peak and
the autograd-saved bytes of earlier steps still alive at that forward. The probe records
what it measured; the bytes matter here when they are at least ``MIN_BYTES`` and
``MIN_FRACTION`` of that peak (ordinary loops with small outputs stay quiet), and this
detector asks for two such steps, so a one-off (the last batch of an epoch kept for
logging) stays quiet.

Severity: always ``info``. ``out`` and ``loss`` of step N alive at step N+1's forward is
ordinary Python scoping: the names are rebound right after that forward, so it costs at
most one step (its outputs, and whatever part of its graph no backward freed: a WGAN-GP
penalty's double-backward graph, an auxiliary output left out of the loss) and never
grows. The peak is higher by those bytes, which is worth knowing and easy to avoid, not a
bug. What *is* worth a warning is reported by the kinds that see its cause:
``graph-kept-across-step`` (a holder outside the step's locals: an attribute, a closure,
a framework's state; or ``retain_graph=True`` on the step's last backward),
``graph-retained-in-inference`` (forwards no backward used), ``graph-accumulation``
(growing). ``graph_saved_bytes`` (the previous step's saved activations alive at that
forward) is reported in the detail when the locals keep a graph too.

The fix is to drop the names at the end of the step, or to put the step body in a
function whose locals die when it returns.
"""

from __future__ import annotations

from typing import Any

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.evidence import LingeringLocals, Observed
from memwatch.records import Finding
from memwatch.units import format_size

KIND = "lingering-step-locals"
MIN_EVENTS = 2
MIN_BYTES = 1 << 20
MIN_FRACTION = 0.10


def matters(seen: Observed[LingeringLocals]) -> bool:
    """Lingering bytes large in absolute terms and against the step's saved peak."""
    d = seen.evidence
    return d.bytes >= MIN_BYTES and d.bytes >= MIN_FRACTION * d.saved_peak_bytes


def keeps_graph(d: LingeringLocals) -> bool:
    """Whether the previous step's saved activations were alive too, not just outputs
    (reported in the detail; the severity stays info, see the module docstring)."""
    return (
        d.stale_saved_bytes >= MIN_BYTES
        and d.stale_saved_bytes >= MIN_FRACTION * d.saved_peak_bytes
    )


def detect(data: AnalysisInput) -> list[Finding]:
    groups: dict[Any, list[Observed[LingeringLocals]]] = {}
    for event in filter(matters, data.observed(LingeringLocals)):
        loc = event.location
        key = (loc.file, loc.line) if loc is not None else event.evidence.function
        groups.setdefault(key, []).append(event)
    findings = []
    for events in groups.values():
        occurrences = max(e.evidence.occurrences for e in events)
        if max(occurrences, len(events)) < MIN_EVENTS:
            continue
        findings.append(_finding(sorted(events, key=lambda e: e.step), occurrences))
    return findings


def _finding(events: list[Observed[LingeringLocals]], occurrences: int) -> Finding:
    last = events[-1]
    d = last.evidence
    entries = [(n.name, n.bytes) for n in d.names]
    names = [n for n, _ in entries]
    total = d.bytes
    graph = max(
        (e.evidence.stale_saved_bytes for e in events if keeps_graph(e.evidence)), default=0
    )
    saved_peak = d.saved_peak_bytes
    peak_allocated = d.peak_allocated_bytes
    basis = int(peak_allocated) if peak_allocated else saved_peak + total
    share = total / basis if basis else 0.0
    quoted = ", ".join(f"`{n}`" for n in names)
    verb = "is" if len(names) == 1 else "are"
    title = (
        f"{quoted} from the previous step {verb} still alive when the next forward starts "
        f"(+{format_size(total)} at the peak)"
    )
    sizes = ", ".join(f"`{n}` {format_size(b)}" for n, b in entries if b)
    function = d.function or "the loop"
    detail = (
        f"When a step's forward starts, {quoted} in {function}() still "
        f"hold{'s' if len(names) == 1 else ''} the previous step's tensors ({sizes}), so "
        "they coexist with the new step's activations. The step's saved-for-backward peak "
        f"is {format_size(saved_peak)}; dropping them would lower the peak by up to "
        f"{format_size(total)} (~{share:.0%}). Seen in {occurrences} steps, first at step "
        f"{events[0].step}."
    )
    if graph:
        detail += (
            f" The previous step's graph is alive at that forward too: "
            f"{format_size(graph)} of saved activations that no backward freed, kept until "
            "the names are rebound. This costs at most one step (ordinary Python scoping, "
            "not a leak)."
        )
    else:
        detail += (
            " Backward already freed their graph, so this costs at most one step's outputs "
            "(ordinary Python scoping, not a leak)."
        )
    fix = (
        f"Add `del {', '.join(names)}` at the end of each step (after `optimizer.step()`), "
        "or move the step body into a function so its locals are freed when it returns."
    )
    return Finding(
        kind=KIND,
        severity="info",
        title=title,
        detail=detail,
        first_step=events[0].step,
        fix=fix,
        location=last.location,
        variable=names[0] if names else None,
        bytes=total,
        growth_per_step_bytes=None,
        evidence={
            "names": [{"name": n, "bytes": b} for n, b in entries],
            "lingering_bytes": total,
            "saved_peak_bytes": saved_peak,
            "peak_allocated_bytes": peak_allocated,
            "peak_reduction_fraction": round(share, 3),
            "steps_seen": occurrences,
            "forward_line": d.forward_line,
            "graph_saved_bytes": graph,
        },
    )


DETECTOR = Detector(KIND, (LingeringLocals,), detect)
