"""``tensors-in-gc-cycle``: objects holding tensors lie on a reference cycle, so dropping
them frees nothing until Python's cyclic garbage collector runs.

Evidence (``gc-cycle-garbage`` events, one series per cycle: the object's class and the
path from it back to itself): how many of its objects were shown to be garbage during the
run (found unreachable but alive at a step end, or reclaimed by a collection), how many
waited at once (the most unreachable at one step end, or freed by one collection), the
tensor bytes they held, and the statement that stores a name of the path.

A **warning** needs the lag to pile up: at least ``MIN_GARBAGE_OBJECTS`` objects shown to
be garbage, ``MIN_AT_ONCE`` of them waiting at the same time, holding ``MIN_BYTES`` of
tensors, with an object of the program on the cycle (a class or function of its own:
framework objects such as a Lightning module and its trainer refer to each other by
design and live for the whole run). A program that collects right away (its own
``gc.collect()`` every step) never has two waiting: an **info** finding at most, as for a
single object freed by the collector. Objects found unreachable only when the watch
stopped do not count (the run was over). If an object judged unreachable later died
without a collection, the judgement was wrong and the series is not reported.
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.evidence import GcCycleGarbage, Observed
from memwatch.records import Finding, Location, Severity
from memwatch.units import format_size

KIND = "tensors-in-gc-cycle"

#: Distinct objects of one cycle shown to be garbage during the run.
MIN_GARBAGE_OBJECTS = 2
#: Garbage objects of one cycle waiting for the collector at the same time (warning).
MIN_AT_ONCE = 2
#: Tensor bytes those waiting objects held (warning), or one object held (info).
MIN_BYTES = 1024 * 1024

Seen = Observed[GcCycleGarbage]


def path_text(info: GcCycleGarbage) -> str:
    """``model.which_act.__self__``: the variable and the hops back to it."""
    start = info.variable or info.object_type or "object"
    return start + "".join(label for label, _ in info.hops)


def held_at_once(info: GcCycleGarbage) -> tuple[int, int]:
    """(objects, bytes) waiting for the collector at the worst moment seen."""
    at_once = max(info.peak_pending, info.peak_reclaimed_at_once)
    held = max(info.peak_pending_bytes, info.peak_reclaimed_at_once * info.object_bytes)
    return at_once, held


def detect(data: AnalysisInput) -> list[Finding]:
    latest: dict[str, Seen] = {}
    for event in data.observed(GcCycleGarbage):
        latest[event.evidence.cycle] = event
    findings = []
    for event in latest.values():
        finding = _finding(event)
        if finding is not None:
            findings.append(finding)
    return findings


def _finding(event: Seen) -> Finding | None:
    info = event.evidence
    if info.refcount_after_unreachable > 0:
        return None  # an "unreachable" object died without a collection: not trusted
    if info.garbage_objects < 1:
        return None
    at_once, held = held_at_once(info)
    severity: Severity
    repeated = info.garbage_objects >= MIN_GARBAGE_OBJECTS and at_once >= MIN_AT_ONCE
    if repeated and held >= MIN_BYTES and info.user_type:
        severity = "warning"
    elif info.object_bytes >= MIN_BYTES and info.user_type:
        severity = "info"
    else:
        return None
    path = path_text(info)
    name = info.variable or info.object_type
    location = Location.from_dict(info.created_at) or event.location
    hops = " → ".join(f"{label.strip()} ({kind})" for label, kind in info.hops)
    each = format_size(info.object_bytes)
    if severity == "warning":
        title = (
            f"`{name}` ({info.object_type}) is freed only by the garbage collector: "
            f"`{path}` is a reference cycle; {at_once} such objects waited at once "
            f"holding {format_size(held)}"
        )
    else:
        title = (
            f"`{name}` ({info.object_type}) is freed only by the garbage collector: "
            f"`{path}` is a reference cycle ({each} of tensors each)"
        )
    waited = (
        f" the longest waited {info.longest_pending_steps} steps unreachable."
        if info.longest_pending_steps
        else ""
    )
    stored = f" The reference back is stored at {location}." if location else ""
    detail = (
        f"Each {info.object_type} (last bound to `{name}`) refers back to itself: `{name}` "
        f"→ {hops}. When the program drops it, reference counting cannot free it, so its "
        f"tensors ({each} each) stay allocated until Python's cyclic garbage collector "
        f"happens to run (on a GPU, often an out-of-memory error comes first). "
        f"{info.garbage_objects} of them were garbage during the run: "
        f"{info.unreachable} found unreachable but alive at a step end, "
        f"{info.reclaimed_by_gc} freed by a collection; at most {at_once} waited at the "
        f"same time ({format_size(held)});{waited}{stored}"
    )
    return Finding(
        kind=KIND,
        severity=severity,
        title=title,
        detail=detail,
        first_step=info.first_step if info.first_step is not None else event.step,
        fix=_fix(info, name),
        location=location,
        variable=path,
        bytes=held if severity == "warning" else info.object_bytes,
        evidence={
            "cycle": info.cycle,
            "object_type": info.object_type,
            "path": [list(hop) for hop in info.hops],
            "object_bytes": info.object_bytes,
            "garbage_objects": info.garbage_objects,
            "unreachable": info.unreachable,
            "reclaimed_by_gc": info.reclaimed_by_gc,
            "freed_by_refcount": info.freed_by_refcount,
            "peak_at_once": at_once,
            "peak_bytes": held,
            "longest_pending_steps": info.longest_pending_steps,
            "at_stop": info.at_stop,
        },
    )


def _fix(info: GcCycleGarbage, name: str) -> str:
    kinds = [kind for _, kind in info.hops]
    labels = [label.strip() for label, _ in info.hops]
    if any(kind.startswith("bound method") for kind in kinds):
        first = next((lbl for lbl in labels if lbl.startswith(".")), ".attr")
        how = (
            f"Do not store a bound method of the object on itself (`self{first} = "
            "self.method`): store the choice (a name, or the plain function "
            f"`type(self).method`) and pick the method when calling, or keep a "
            "`weakref.WeakMethod`."
        )
    elif any(label.startswith("closure") for label in labels):
        how = (
            "The function on the cycle captures the object in its closure: let the hook "
            "take the module as its argument (a plain function or `@staticmethod`), pass "
            "a `weakref.ref(self)`, or remove the hook (`handle.remove()`) when done."
        )
    else:
        back = next((lbl for lbl in reversed(labels) if lbl.startswith(".")), ".parent")
        how = (
            f"Make the back-reference weak (`{back[1:]}=weakref.ref(self)`, or a "
            f"`weakref.proxy`), or break it (`del obj{back}`) when `{name}` is dropped."
        )
    return how + (
        " As a stopgap, call `gc.collect()` right after dropping the object (between "
        "trials or batches)."
    )


DETECTOR = Detector(KIND, (GcCycleGarbage,), detect)
