"""``hooks-accumulate``: hooks registered on every call or step and never removed.

Evidence (``live-hooks`` events, ``collect/hook_sites.py``): per registration line, the
hooks from it still registered, and the most of them on one module or tensor, counted on
a step stride. A line whose live hooks on one module kept rising (at ``MIN_RISES``
records or more, over ``MIN_SPAN_STEPS`` steps or more, up to ``MIN_PER_OWNER`` or more
on one module at the peak; judged at the peak, since the hooks go when the model dies at
the end of the script) piles hooks up: every forward/backward runs all of them, and each keeps its
closure (often a tensor) alive.

Silent on: hooks registered once (one record, flat afterwards), hooks registered and
removed per step or per evaluation (the count falls back to zero), and hooks registered
once on each of many modules (``max_per_owner`` stays 1: a model rebuilt per fold).
"""

from __future__ import annotations

from collections import defaultdict

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.evidence import LiveHooks, Observed
from memwatch.records import Finding

KIND = "hooks-accumulate"

MIN_RISES = 3  # records at which the line's live count rose
MIN_SPAN_STEPS = 4  # steps between the first and the last rise (not one setup burst)
MIN_PER_OWNER = 3  # live hooks from the line on one module at the last record

_KIND_OF = {
    "register_forward_pre_hook": "forward pre-hook",
    "register_forward_hook": "forward hook",
    "register_full_backward_pre_hook": "backward pre-hook",
    "register_full_backward_hook": "backward hook",
    "register_backward_hook": "backward hook",
    "register_hook": "tensor hook",
    "register_post_accumulate_grad_hook": "post-accumulate-grad hook",
}


def _rises(group: list[Observed[LiveHooks]]) -> list[int]:
    """The steps at which the line's live count went up."""
    steps = []
    previous = 0
    for seen in group:
        if seen.evidence.live > previous:
            steps.append(seen.step)
        previous = seen.evidence.live
    return steps


def detect(data: AnalysisInput) -> list[Finding]:
    by_line: dict[tuple[str, str], list[Observed[LiveHooks]]] = defaultdict(list)
    for seen in data.observed(LiveHooks):
        key = (str(seen.location) if seen.location else "", seen.evidence.method)
        by_line[key].append(seen)
    findings = []
    for group in by_line.values():
        group.sort(key=lambda e: e.step)
        last = max(group, key=lambda e: (e.evidence.max_per_owner, e.evidence.live))  # the peak
        rises = _rises(group[: group.index(last) + 1])
        ev = peak = last.evidence
        if (
            len(rises) < MIN_RISES
            or rises[-1] - rises[0] < MIN_SPAN_STEPS
            or ev.max_per_owner < MIN_PER_OWNER
        ):
            continue
        hook = _KIND_OF.get(ev.method, "hook")
        owner = ev.owner_path or peak.owner_path or ev.variable or ev.owner_type or "a module"
        owner_text = f"`{owner}`" + (
            f" ({ev.owner_type})" if ev.owner_type and ev.owner_type not in owner else ""
        )
        span = max(1, last.step - group[0].step)
        per_step = (ev.live - group[0].evidence.live) / span
        where = f" at {last.location}" if last.location else ""
        receiver = ev.variable or "module"
        capped = " (at least: more were registered than memwatch follows)" if ev.capped else ""
        findings.append(
            Finding(
                kind=KIND,
                severity="warning",
                title=(
                    f"{hook}s pile up: {ev.live} from `{receiver}.{ev.method}(...)` are "
                    "still registered"
                ),
                detail=(
                    f"`{receiver}.{ev.method}(...)`{where} registered {ev.registered} "
                    f"{hook}s and {ev.live} are still registered{capped}, on {ev.owners} "
                    f"module{'s' if ev.owners != 1 else ''}/tensor"
                    f"{'s' if ev.owners != 1 else ''}; {owner_text} holds "
                    f"{ev.max_per_owner} of them. The count rose at {len(rises)} checks "
                    f"(steps {rises[0]}..{rises[-1]}, about {per_step:.1f} per step): every "
                    "call runs all of them, and each keeps its closure (and the tensors it "
                    "captures) alive."
                ),
                first_step=rises[0],
                fix=(
                    f"Register the hook once (outside the step or forward), or keep every "
                    f"handle `{receiver}.{ev.method}(...)` returns and call "
                    "`handle.remove()` when it is no longer needed."
                ),
                location=last.location,
                variable=f"{receiver}.{ev.method}",
                evidence={
                    "method": ev.method,
                    "live": ev.live,
                    "registered": ev.registered,
                    "owners": ev.owners,
                    "max_per_owner": ev.max_per_owner,
                    "owner_path": ev.owner_path or peak.owner_path,
                    "owner_type": ev.owner_type,
                    "rises": len(rises),
                    "rise_steps": rises[-16:],
                    "capped": ev.capped,
                },
            )
        )
    return findings


DETECTOR = Detector(KIND, (LiveHooks,), detect)
