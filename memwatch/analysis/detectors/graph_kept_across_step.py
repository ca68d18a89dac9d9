"""``graph-kept-across-step``: last step's graph or activations kept alive one step on.

Evidence: ``graph-kept-across-step`` events from ``memwatch.collect.step_kept_probe``, at
a training step's first forward:

* cause "held": tensors with a ``grad_fn`` from the previous step, alive because an
  attribute, a closure variable, a global (or a container below one) holds them —
  ``model[1].activity``, ``engine.state.output`` — with their bytes and the statement that
  stores into the holder;
* cause "retain-graph": the previous step's last ``backward``/``autograd.grad`` passed
  ``retain_graph=True`` and its saved activations (``stale_saved_bytes``) are still alive.

The cost is one step of those bytes at the next step's peak: it does not grow (a graph
that grows is ``graph-accumulation``), so the severity is ``warning``. It matters when
the kept bytes are at least ``MIN_BYTES`` and ``MIN_FRACTION`` of the step's saved peak,
seen in ``MIN_STEPS`` steps (a one-off, like the last batch kept for a log line, is not
reported).

Relation to the neighbours: ``lingering-step-locals`` is the loop's own variables
(``out``, ``loss``) still bound at the next forward — ordinary scoping, the probe leaves
those out here; ``retain-graph-leak`` is ``retain_graph=True`` keeping *every* step's
graph (growing), judged from its own evidence. A retained graph kept for one step only is
reported here.
"""

from __future__ import annotations

from typing import Any

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.evidence import GraphKeptAcrossStep, Observed
from memwatch.records import Finding
from memwatch.units import format_size

KIND = "graph-kept-across-step"
#: One step of a tensor this small is noise at any real peak (a 64 KiB routing tensor a
#: pre-hook parks on a layer, a running statistic): reported from 100 KiB up.
MIN_BYTES = 100 * 1024
MIN_FRACTION = 0.05
MIN_STEPS = 2


def kept_bytes(d: GraphKeptAcrossStep) -> int:
    """What the holder keeps: its tensors' own bytes, or the retained graph's saved bytes."""
    if d.cause == "retain-graph":
        return d.stale_saved_bytes
    return d.tensor_bytes


def matters(seen: Observed[GraphKeptAcrossStep]) -> bool:
    d = seen.evidence
    kept = kept_bytes(d)
    return kept >= MIN_BYTES and kept >= MIN_FRACTION * d.saved_peak_bytes


def detect(data: AnalysisInput) -> list[Finding]:
    groups: dict[Any, list[Observed[GraphKeptAcrossStep]]] = {}
    for event in filter(matters, data.observed(GraphKeptAcrossStep)):
        d = event.evidence
        loc = event.location
        where = (loc.file, loc.line) if loc is not None else None
        groups.setdefault((d.cause, d.holder, where), []).append(event)
    findings = []
    for events in groups.values():
        occurrences = max(e.evidence.occurrences for e in events)
        if max(occurrences, len({e.step for e in events})) < MIN_STEPS:
            continue
        findings.append(_finding(sorted(events, key=lambda e: e.step), occurrences))
    return findings


def _finding(events: list[Observed[GraphKeptAcrossStep]], occurrences: int) -> Finding:
    last = events[-1]
    d = last.evidence
    kept = max(kept_bytes(e.evidence) for e in events)
    holder = d.holder or "a tensor"
    share = kept / d.saved_peak_bytes if d.saved_peak_bytes else 0.0
    seen = f"Seen {occurrences} times at the steps checked, first at step {events[0].step}."
    if d.cause == "retain-graph":
        call = (
            "autograd.grad(..., retain_graph=True)"
            if d.grad_fn == "autograd.grad"
            else (
                f"`{holder}.backward(retain_graph=True)`"
                if d.holder
                else "backward(retain_graph=True)"
            )
        )
        title = (
            f"the step's last backward retains its graph: {format_size(kept)} of activations "
            "kept into the next step"
        )
        detail = (
            f"The last backward of each step is {call}, so nothing frees the step's saved "
            f"activations ({format_size(kept)}, ~{share:.0%} of the step's saved peak) until "
            "the names holding the losses are rebound, after the next step's forward: the "
            f"peak carries one extra step of activations. {seen}"
        )
        fix = (
            "Pass retain_graph=True only to the backward passes that another backward of the "
            "same step still needs; the last one must free the graph (or add the losses and "
            "call backward once)."
        )
    else:
        how = {
            "attribute": "an attribute",
            "closure": "a closure variable",
            "global": "a global",
        }.get(d.holder_kind or "", "a holder outside the step")
        title = (
            f"`{holder}` keeps the previous step's output with its graph into the next step "
            f"(+{format_size(kept)} at the peak)"
        )
        detail = (
            f"When a step's forward starts, `{holder}` ({how}) still holds "
            f"{d.tensors} tensor{'s' if d.tensors != 1 else ''} of the previous step with "
            f"autograd history ({d.grad_fn or 'grad_fn'}): {format_size(kept)}, ~{share:.0%} "
            "of the step's saved peak, alive next to the new activations until the holder "
            f"is overwritten. It does not grow, it costs one step at the peak. {seen}"
        )
        if d.stale_saved_bytes:
            detail += (
                f" {format_size(d.stale_saved_bytes)} of the previous step's saved "
                "activations were alive at that forward too."
            )
        fix = (
            f"Store `.detach()` (or `.item()` for a number) in `{holder}`, or set it to None "
            "(`del`) once the step is done with it."
        )
    return Finding(
        kind=KIND,
        severity="warning",
        title=title,
        detail=detail,
        first_step=events[0].step,
        fix=fix,
        location=last.location,
        variable=d.holder,
        bytes=kept,
        growth_per_step_bytes=None,
        evidence={
            "cause": d.cause,
            "holder": d.holder,
            "holder_kind": d.holder_kind,
            "tensors": d.tensors,
            "kept_bytes": kept,
            "stale_saved_bytes": d.stale_saved_bytes,
            "saved_peak_bytes": d.saved_peak_bytes,
            "peak_fraction": round(share, 3),
            "grad_fn": d.grad_fn,
            "steps_seen": occurrences,
        },
    )


DETECTOR = Detector(KIND, (GraphKeptAcrossStep,), detect)
