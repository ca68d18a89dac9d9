"""``memory-growth``: tensor memory grows steadily across steps, for a reason other than graphs.

Two sources, in order of how much they can say:

1. **A named holder grows** (``holder-growth`` events from
   ``memwatch.collect.growth_probe``): ``ACTIVATIONS`` appended to by a forward hook,
   ``model.cache`` filled every step, a list of detached outputs. The probe records a
   holder's bytes once it grew for several consecutive steps, every few steps after, and
   when that changes; this detector judges the latest measurement per holder: still
   growing (a finding), stopped for ``STOP_AFTER`` steps (bounded: none) or reset (fell
   below half its size or rebuilt, e.g. cleared each epoch: none), and growing enough
   (``MIN_GROWTH_PER_STEP`` or ``MIN_TOTAL``). Holders that carry autograd graphs are left
   to ``graph-accumulation``.
2. **Device memory grows with no holder to blame** (``StepRecord.allocated_bytes``: CUDA,
   or CPU runs under ``--budget``): after warm-up, most steps rise, the net rise is real
   (≥ 1 MiB and ≥ 64 KiB/step), no single jump carries half of it (a
   ``best_model = copy.deepcopy(model)`` is one jump), and neither named holders,
   graph-accumulation nor autograd-saved tensors kept across steps (``saved_stale_bytes``,
   the business of ``retain-graph-leak`` / ``graph-retained-in-inference``) explain at
   least half of it. Location None, and the finding says so.

Severity: ``error`` when the growth is large (≥ 256 MiB so far, ≥ 16 MiB/step, or ≥ 10 %
of the device), else ``warning``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors import graph_accumulation
from memwatch.evidence import GraphAccumulation, HolderGrowth, Observed
from memwatch.records import Finding, StepRecord
from memwatch.units import format_size

KIND = "memory-growth"
KiB = 1024
MiB = 1024 * 1024
MIN_GROWTH_PER_STEP = 64 * KiB
STOP_AFTER = 8  # steps without growth after which a growing holder has stopped
#: A holder emptied before is growing again only once it passes its earlier peak by this.
CYCLE_MARGIN = 1.25
MIN_TOTAL = 1 * MiB
LARGE_TOTAL = 256 * MiB
LARGE_PER_STEP = 16 * MiB
LARGE_DEVICE_FRACTION = 0.10
TREND_MIN_STEPS = 6
TREND_MAX_STEPS = 512
TREND_RISE_FRACTION = 0.75
MAX_JUMP_SHARE = 0.5
EXPLAINED_SHARE = 0.5
_TRAINING = frozenset({"optimizer", "manual", "scaler", "forward"})


def detect(data: AnalysisInput) -> list[Finding]:
    graph_names = _graph_names(data)
    findings: list[Finding] = []
    explained = 0
    groups: dict[str, list[Observed[HolderGrowth]]] = {}
    for event in data.observed(HolderGrowth):
        groups.setdefault(event.evidence.holder, []).append(event)
    for holder, events in groups.items():
        events.sort(key=lambda e: e.step)
        last = events[-1]
        if not is_growing(last) or holder in graph_names:
            continue
        growth = last.evidence.growth_per_step_bytes
        total = last.evidence.bytes - last.evidence.start_bytes
        if growth < MIN_GROWTH_PER_STEP and total < MIN_TOTAL:
            continue
        explained += growth
        findings.append(_holder_finding(data, holder, events, growth, total))
    findings = _innermost(findings)
    trend = _trend_finding(data, explained)
    if trend is not None:
        findings.append(trend)
    return findings


def _innermost(findings: list[Finding]) -> list[Finding]:
    """One leak, one finding: a container whose item grows (``logger.stats`` and
    ``logger.stats['q_values']``) is reported by the item, which says what to change."""
    names = [f.variable or "" for f in findings]
    return [
        f
        for f in findings
        if not any(
            other != f.variable and other.startswith((f"{f.variable}[", f"{f.variable}."))
            for other in names
        )
    ]


def is_growing(seen: Observed[HolderGrowth]) -> bool:
    """The verdict on a holder's latest measurement: still growing, not stopped or reset.

    Stopped: no growth for ``STOP_AFTER`` steps (it was bounded after all). Reset: it fell
    below half its largest size, or a local list was rebuilt (e.g. cleared each epoch).
    Cyclic: it was emptied before and has not passed that earlier peak by
    ``CYCLE_MARGIN`` (a per-epoch list filling up again).
    """
    h = seen.evidence
    if not h.same_container or h.bytes < h.max_bytes // 2:
        return False
    if h.cycle_peak_bytes and h.bytes <= CYCLE_MARGIN * h.cycle_peak_bytes:
        return False  # emptied before at this size: a per-epoch list filling up again
    stop_after = max(STOP_AFTER, 2 * h.period_steps + 1)  # stepwise: two periods
    return h.last_growth_step is not None and seen.step - h.last_growth_step < stop_after


def _graph_names(data: AnalysisInput) -> set[str]:
    names: set[str] = set()
    for seen in graph_accumulation.proven(data):
        for value in (seen.evidence.variable, seen.evidence.holder):
            if value:
                names.add(value)
    return names


def _severity(data: AnalysisInput, total: int, growth: int) -> str:
    device_total = data.info.device_total_bytes if data.info is not None else None
    large = (
        total >= LARGE_TOTAL
        or growth >= LARGE_PER_STEP
        or (bool(device_total) and total >= LARGE_DEVICE_FRACTION * float(device_total or 0))
    )
    return "error" if large else "warning"


def _holder_finding(
    data: AnalysisInput, holder: str, events: list[Observed[HolderGrowth]], growth: int, total: int
) -> Finding:
    last = events[-1]
    d = last.evidence
    first = d.first_step
    first_step = int(first) if first is not None else events[0].step
    nbytes = d.bytes
    statement = d.statement
    kind = "list" if d.kind == "container" else "tensor"
    period = d.period_steps if d.period_steps >= 2 else 0
    if period:
        pace = f"{format_size(growth * period)} every {period} steps"
        pace_words = f"about {format_size(growth * period)} every {period} steps"
    else:
        pace = f"{format_size(growth)}/step"
        pace_words = f"about {format_size(growth)} at every step"
    title = f"`{holder}` grows by {pace} since step {first_step} (now {format_size(nbytes)})"
    count = ""
    if d.kind == "container":
        count = f" ({d.length} entries, {d.tensors} tensors)"
    what = "host arrays (numpy)" if d.host_bytes * 2 >= nbytes > 0 else "tensors"
    detail = (
        f"{_scope_words(d, holder, last)} holds {format_size(nbytes)} of {what}{count} and "
        f"gained {pace_words} since step {first_step} "
        f"({format_size(total, signed=True)} so far); nothing releases it, so it grows "
        "until memory runs out."
    )
    if statement:
        detail += f" It is extended by `{statement}`."
    if d.estimated:
        detail += " (Bytes estimated from a sample of the entries.)"
    return Finding(
        kind=KIND,
        severity=_severity(data, total, growth),  # type: ignore[arg-type]
        title=title,
        detail=detail,
        first_step=first_step,
        fix=_fix(holder, d.pattern, kind, d.scope),
        location=last.location,
        variable=holder,
        bytes=nbytes,
        growth_per_step_bytes=growth,
        evidence={
            "holder": holder,
            "scope": d.scope,
            "bytes": nbytes,
            "start_bytes": d.start_bytes,
            "length": d.length,
            "samples": [list(s) for s in d.samples],
            "statement": statement,
            "estimated": d.estimated,
            "last_step": last.step,
            "period_steps": period,
            "host_bytes": d.host_bytes,
        },
    )


def _scope_words(d: Any, holder: str, seen: Observed[HolderGrowth] | None = None) -> str:
    scope = d.scope
    owner = d.owner_class
    function = seen.location.function if seen is not None and seen.location else None
    if holder.endswith("(functools cache)"):
        return f"The cache of `{holder.removesuffix(' (functools cache)')}`"
    if scope == "closure":
        where = f" of `{function}`" if function else ""
        return f"`{holder}` (a variable in the closure{where})"
    if scope == "module" and owner:
        return f"`{holder}` (an attribute of {_a(owner)} module)"
    if scope == "attribute" and owner:
        return f"`{holder}` (an attribute of {_a(owner)} object)"
    if scope == "global":
        return f"`{holder}` (a module-level variable)"
    return f"`{holder}`"


def _fix(holder: str, pattern: Any, kind: str, scope: Any = None) -> str:
    if holder.endswith("(functools cache)"):
        return (
            "A `functools.cache`/`lru_cache` keeps every argument it was called with (`self` "
            "for a method) and every result alive: give it a bound (`lru_cache(maxsize=N)`), "
            "call `.cache_clear()` when the objects are done with, or cache on a small "
            "hashable key you control instead of the object or tensor."
        )
    if scope == "closure":
        return (
            f"`{holder}` gains an entry per call and is never emptied: key it on something "
            "small and hashable that repeats (a shape, an id you control), not on tensors or "
            "per-batch objects, and bound it (an LRU with a maximum size) or clear it."
        )
    if pattern == "concat" or kind == "tensor":
        return (
            f"Stop growing `{holder}` every step: keep a fixed-size window (or a running "
            "summary such as a mean) instead of concatenating, or move what you must keep "
            "to the CPU with `.cpu()`."
        )
    return (
        f"Bound `{holder}`: keep only what you need (the latest entry, a running mean, "
        f"`.item()` values), use `collections.deque(maxlen=N)`, or clear it after use; "
        "if everything must be kept, store it on the CPU with `.cpu()`."
    )


# -- device trend --------------------------------------------------------------------------
def _trend_finding(data: AnalysisInput, explained: int) -> Finding | None:
    steps = [s for s in data.steps if s.boundary in _TRAINING and s.allocated_bytes is not None][
        data.warmup :
    ]
    steps = steps[-TREND_MAX_STEPS:]
    if len(steps) < TREND_MIN_STEPS:
        return None
    values = [int(s.allocated_bytes or 0) for s in steps]
    start = _rising_start(values)
    steps, values = steps[start:], values[start:]
    if len(steps) < TREND_MIN_STEPS:
        return None
    deltas = [b - a for a, b in pairwise(values)]
    rises = sum(1 for d in deltas if d > 0)
    net = values[-1] - values[0]
    span = steps[-1].step - steps[0].step
    if span <= 0 or net < MIN_TOTAL:
        return None
    slope = net // span
    if slope < MIN_GROWTH_PER_STEP or rises < TREND_RISE_FRACTION * len(deltas):
        return None
    if max(deltas) > MAX_JUMP_SHARE * net:
        return None  # one big allocation (a model copy), not a steady climb
    if explained >= EXPLAINED_SHARE * slope:
        return None
    graph_growth = sum(e.evidence.tensor_growth_per_step for e in graph_accumulation.proven(data))
    if graph_growth >= EXPLAINED_SHARE * slope:
        return None
    stale = _stale_slope(steps)
    if stale >= EXPLAINED_SHARE * slope:
        return None  # autograd-saved tensors kept across steps: the graph detectors' case
    first, last = steps[0], steps[-1]
    what = (
        "Device memory"
        if data.info is None or data.info.device_type != "cpu"
        else ("Tracked tensor memory")
    )
    return Finding(
        kind=KIND,
        severity=_severity(data, net, slope),  # type: ignore[arg-type]
        title=f"{what} grows by {format_size(slope)}/step since step {first.step}, "
        "with no named holder to blame",
        detail=(
            f"Allocated memory rose from {format_size(first.allocated_bytes)} at step "
            f"{first.step} to {format_size(last.allocated_bytes)} at step {last.step} "
            f"({format_size(net, signed=True)}), rising in {rises} of {len(deltas)} steps. "
            "memwatch found no variable, attribute or global of the training loop whose "
            "tensors grow with it, and no autograd graph kept across steps: the tensors are "
            "held somewhere the scan does not look (a closure, a hook's default argument, "
            "a C extension, a structure nested deeper than one level), so no line is named."
        ),
        first_step=first.step,
        fix=(
            "Look for tensors stored at every step outside the loop's variables (closures, "
            "hooks, class-level caches, nested containers) and bound or drop them; "
            "`memwatch tui` shows what holds memory step by step."
        ),
        location=None,
        variable=None,
        bytes=net,
        growth_per_step_bytes=slope,
        evidence={
            "allocated_first_bytes": values[0],
            "allocated_last_bytes": values[-1],
            "steps_judged": len(steps),
            "rising_steps": rises,
            "explained_by_holders_per_step": explained,
            "saved_stale_growth_per_step": stale,
        },
    )


def _rising_start(values: Sequence[int]) -> int:
    """Index where the final rising stretch begins (skips a flat start before a leak)."""
    index = len(values) - 1
    flat = 0
    while index > 0:
        if values[index] > values[index - 1]:
            flat = 0
        else:
            flat += 1
            if flat > 2:
                return index + flat - 1
        index -= 1
    return 0


def _stale_slope(steps: Sequence[StepRecord]) -> int:
    """Growth per step of saved bytes kept across steps, between the first and last steps
    whose saved tensors were counted (sampling leaves the others None)."""
    counted = [(s.step, s.saved_stale_bytes) for s in steps if s.saved_stale_bytes is not None]
    if len(counted) < 2:
        return 0
    (first, low), (last, high) = counted[0], counted[-1]
    span = last - first
    if span <= 0:
        return 0
    return max(0, (high - low) // span)


def _a(word: str) -> str:
    """``a Meter`` / ``an AverageMeter``."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


DETECTOR = Detector(KIND, (HolderGrowth, GraphAccumulation), detect)
