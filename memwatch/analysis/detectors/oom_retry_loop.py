"""``oom-retry-loop``: an OOM is caught and retried while the failed attempt is still held.

The batch-size back-off (``except OutOfMemoryError: batch //= 2`` and try again) only
works if the failed attempt's memory is released before the retry. It often is not: the
retry runs inside the ``except`` block (the exception, and through its traceback every
frame it passed, stay alive), or the attempt's ``pred``/``loss`` are still bound (with
their autograd graph and every activation it saved), or the partial gradients of the
failed backward sit in ``.grad``. The retry then starts with the memory it needs already
taken, fails again, and the loop backs off much further than the device requires.

Evidence (``oom-retry`` events, written by ``memwatch.collect.oom_probe`` at the first
forward after an OOM): ``held_bytes`` (the failed attempt's bytes still alive — exact
under tensor tracking), ``attempt_bytes``, bytes in use before the attempt, at the OOM and
at the retry, and ``holders`` (names, the exception, gradients, with bytes).

Rule: a retry is *broken* when what is still held is a real part of the attempt, at
least ``_MIN_FRACTION`` of it and at least ``_MIN_HELD_BYTES``; a healthy back-off holds
(nearly) nothing, its bytes in use back at the level before the attempt. Without exact
identity (CUDA) the activations still saved for backward since the attempt started
count as held too. One finding per retry site, describing its worst retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.evidence import Observed, OomRetry
from memwatch.records import Finding
from memwatch.units import format_size

KIND = "oom-retry-loop"
_MIN_HELD_BYTES = 64 * 1024
_MIN_FRACTION = 0.10
_MAX_EVIDENCE_RETRIES = 16


def held_bytes(retry: OomRetry) -> int:
    """The failed attempt's bytes still alive at the retry (see the module docstring)."""
    held = retry.held_bytes
    if not retry.held_exact:
        held += max(0, retry.saved_bytes - (retry.saved_before_attempt or 0))
    return held


def is_broken(retry: OomRetry) -> bool:
    held = held_bytes(retry)
    return held >= _MIN_HELD_BYTES and held >= _MIN_FRACTION * (retry.attempt_bytes or 0)


def detect(data: AnalysisInput) -> list[Finding]:
    retries = data.observed(OomRetry)
    if not retries:
        return []
    broken: dict[str, list[Observed[OomRetry]]] = {}
    healthy = 0
    for event in retries:
        if is_broken(event.evidence):
            where = str(event.location) if event.location is not None else "-"
            broken.setdefault(where, []).append(event)
        else:
            healthy += 1
    return [_finding(events, healthy) for events in broken.values()]


def _finding(events: Sequence[Observed[OomRetry]], healthy: int) -> Finding:
    worst = max(events, key=lambda e: held_bytes(e.evidence))
    info = worst.evidence
    held = held_bytes(info)
    attempt = info.attempt_bytes or 0
    holders = [h for h in info.holders or () if isinstance(h, Mapping)]
    names = _names(holders)
    exception = next((h for h in holders if h.get("via") == "exception"), None)
    locals_ = [h for h in holders if h.get("via") == "local"]
    grads = [h for h in holders if h.get("via") == "grad"]
    variable = names[0] if names else None
    who = ", ".join(f"`{n}`" for n in names) if names else "references memwatch could not name"
    title = f"OOM retry starts with {format_size(held)} of the failed attempt still held by {who}"
    oom_at = info.oom_location
    count = len(events)
    retry_at = f" at {worst.location}" if worst.location is not None else ""
    retried = f"{count} retries" if count != 1 else "the retry"
    lines = [
        f"An out-of-memory error at {oom_at or 'an unknown place'} was caught and retried"
        f"{retry_at} while the failed attempt was still referenced ({retried} after an OOM "
        f"started that way): the worst started with {format_size(held)} of the attempt's "
        f"{format_size(attempt)} alive" + _levels(info) + "."
    ]
    lines.extend(_holder_lines(holders))
    if healthy:
        lines.append(f"{healthy} other retr{'ies' if healthy != 1 else 'y'} released memory.")
    return Finding(
        kind=KIND,
        severity="error",
        title=title,
        detail=" ".join(lines),
        first_step=min(
            e.step if e.evidence.oom_step is None else e.evidence.oom_step for e in events
        ),
        fix=_fix(exception, locals_, grads),
        location=worst.location,
        variable=variable,
        bytes=held,
        evidence={
            "retries": count,
            "healthy_retries": healthy,
            "held_bytes": held,
            "attempt_bytes": attempt,
            "pre_attempt_bytes": info.pre_attempt_bytes,
            "in_use_at_oom": info.in_use_at_oom,
            "in_use_at_retry": info.in_use_bytes,
            "in_except_block": bool(info.in_except_block),
            "exception_alive": bool(info.exception_alive),
            "oom_location": oom_at,
            "holders": [_plain(h) for h in holders],
            "held_per_retry": [
                {"step": e.step, "held_bytes": held_bytes(e.evidence)}
                for e in events[:_MAX_EVIDENCE_RETRIES]
            ],
        },
    )


def _names(holders: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for holder in holders:
        name = str(holder.get("name") or "")
        if name and name not in names:
            names.append(name)
    return names


def _levels(info: OomRetry) -> str:
    pre, at_retry = info.pre_attempt_bytes, info.in_use_bytes
    if pre is None or at_retry is None:
        return ""
    return (
        f" ({format_size(at_retry)} in use when the retry started, against "
        f"{format_size(pre)} before the failed attempt)"
    )


def _holder_lines(holders: Sequence[Mapping[str, Any]]) -> list[str]:
    parts: list[str] = []
    graph_bytes = 0
    graph_holders: list[str] = []
    for holder in holders:
        name = holder.get("name")
        size = format_size(int(holder.get("bytes") or 0))
        if holder.get("graph"):
            graph_bytes = max(graph_bytes, int(holder.get("graph_bytes") or 0))
            graph_holders.append(f"`{name}`")
        if holder.get("via") == "exception":
            how = (
                "the exception still being handled"
                if holder.get("handling")
                else "the exception, still referenced"
            )
            kept = int(holder.get("frames_kept") or 0)
            frames = f"; its traceback keeps {kept} finished frame{'s' if kept != 1 else ''}"
            through = ", ".join(
                f"{t.get('function')}'s `{t.get('name')}`" for t in holder.get("through") or ()
            )
            if through:
                frames += f" ({through})"
            parts.append(f"`{name}` is {how}{frames if kept else ''} ({size} directly).")
        elif holder.get("via") == "grad":
            parts.append(f"`{name}`'s parameter gradients from the failed backward: {size}.")
        else:
            func = holder.get("function")
            where = f" in {func}()" if func else ""
            parts.append(f"`{name}`{where}: {size}.")
    if graph_bytes:
        parts.append(
            f"A further {format_size(graph_bytes)} are activations saved in the autograd "
            f"graph that {', '.join(graph_holders)} still reach."
        )
    return parts


def _fix(
    exception: Mapping[str, Any] | None,
    locals_: Sequence[Mapping[str, Any]],
    grads: Sequence[Mapping[str, Any]],
) -> str:
    steps: list[str] = []
    if exception is not None:
        steps.append(
            "leave the `except` block before retrying (set a flag in it and retry after it), "
            "so the exception and its traceback are dropped"
        )
    if locals_:
        names = ", ".join(str(h.get("name")) for h in locals_[:4])
        steps.append(f"`del` the failed attempt's tensors ({names}) before the retry")
    if grads:
        steps.append("call `optimizer.zero_grad(set_to_none=True)` to drop partial gradients")
    if not steps:
        steps.append("drop every reference to the failed attempt's tensors before retrying")
    text = "; ".join(steps)
    return text[0].upper() + text[1:] + " (or let `memwatch.find_batch_size` search the size)."


def _plain(holder: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in holder.items() if not str(k).startswith("_")}


DETECTOR = Detector(KIND, (OomRetry,), detect)
