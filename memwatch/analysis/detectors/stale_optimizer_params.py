"""``stale-optimizer-params``: an optimizer steps parameters that no module run any more
holds (the model was replaced, reloaded or re-created after the optimizer was built).

Evidence (``stale-optimizer-params`` events, at an optimizer's checked steps): how many of
its trainable parameters are in none of the root modules that ran since its previous
check (orphans), whether they had gradients, and the bytes they pin (parameters,
gradients, optimizer state). A check is *stale* when root forwards ran, the optimizer has
orphans and no gradient reached them (none, or the sampled ones all zeros): a parameter
the program still uses without a module (a free ``nn.Parameter``, the master copies of
mixed precision, ``torch.func`` weights) gets gradients and is never stale. Frozen
parameters (``requires_grad=False``) are not counted at all.

A finding needs ``MIN_STALE_CHECKS`` consecutive stale checks of one optimizer (a model
replaced between two checks is still in the first window). When every trainable parameter
of the optimizer is an orphan, the model that runs is not being trained: an error, at any
size. When only some are, it is a warning once they pin ``MIN_PINNED_BYTES``.
"""

from __future__ import annotations

from collections.abc import Sequence

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import code, site
from memwatch.evidence import Observed, StaleOptimizerParams
from memwatch.records import Finding, Location
from memwatch.units import format_size

KIND = "stale-optimizer-params"

#: Consecutive stale checks of one optimizer before it is reported.
MIN_STALE_CHECKS = 2
#: Bytes some (not all) orphan parameters must pin, with their gradients and state.
MIN_PINNED_BYTES = 1024 * 1024

Seen = Observed[StaleOptimizerParams]


def is_stale(info: StaleOptimizerParams) -> bool:
    """Modules ran, some of the optimizer's parameters are in none of them, and no
    gradient reached those (``None``, or every sampled gradient all zeros)."""
    if info.forwarded <= 0 or info.orphans <= 0:
        return False
    if info.orphans_with_grad == 0:
        return True
    return info.orphan_grads_checked > 0 and info.orphan_grads_zero == info.orphan_grads_checked


def pinned(info: StaleOptimizerParams) -> int:
    return info.orphan_bytes + info.grad_bytes + info.state_bytes


def longest_stale_run(events: Sequence[Seen]) -> list[Seen]:
    """The longest run of consecutive stale checks (the latest on a tie)."""
    best: list[Seen] = []
    run: list[Seen] = []
    for event in events:
        if is_stale(event.evidence):
            run.append(event)
            if len(run) >= len(best):
                best = list(run)
        else:
            run = []
    return best


def detect(data: AnalysisInput) -> list[Finding]:
    by_optimizer: dict[int, list[Seen]] = {}
    for event in data.observed(StaleOptimizerParams):
        by_optimizer.setdefault(event.evidence.optimizer_serial, []).append(event)
    findings = []
    for events in by_optimizer.values():
        events.sort(key=lambda e: e.step)
        run = longest_stale_run(events)
        if len(run) < MIN_STALE_CHECKS:
            continue
        finding = _finding(run)
        if finding is not None:
            findings.append(finding)
    return findings


def _finding(run: list[Seen]) -> Finding | None:
    first, last = run[0], run[-1]
    info = last.evidence
    every = info.orphans >= info.params
    held = pinned(info)
    if not every and held < MIN_PINNED_BYTES:
        return None
    location, variable = site(last)
    name = code(variable, "the optimizer")
    optimizer = info.optimizer or "optimizer"
    created = Location.from_dict(info.created_at)
    built = f" (built at {created})" if created else ""
    modules = ", ".join(f"`{m}`" for m in info.modules) or "the root modules"
    which = (
        f"none of its {info.params} trainable parameters"
        if every
        else f"{info.orphans} of its {info.params} trainable parameters"
    )
    stepped = f" at {location}" if location else ""
    consequence = (
        "the model that runs is not trained: every step updates parameters nothing uses"
        if every
        else "those parameters are updated for nothing"
    )
    title = (
        f"{optimizer} {name} steps {info.orphans} parameter{'s' if info.orphans != 1 else ''} "
        f"no module uses any more, pinning {format_size(held)}"
    )
    old, grads, state = (
        format_size(n) for n in (info.orphan_bytes, info.grad_bytes, info.state_bytes)
    )
    detail = (
        f"From step {first.step} to step {last.step} ({len(run)} checks), the {optimizer} "
        f"optimizer{built} stepped{stepped} with {which} in the modules that ran "
        f"({modules}) and no gradient reaching them: the model was replaced, reloaded or "
        f"re-created after the optimizer was built. It keeps the old parameters ({old}), "
        f"their gradients ({grads}) and optimizer state ({state}) alive, and {consequence}."
    )
    fix = (
        f"Build the optimizer on the model that is trained: create {name} again after "
        "replacing the model (`optimizer = Adam(model.parameters(), ...)`), or load a "
        "checkpoint into the existing model (`model.load_state_dict(torch.load(f))`) "
        "instead of rebinding `model`."
    )
    return Finding(
        kind=KIND,
        severity="error" if every else "warning",
        title=title,
        detail=detail,
        first_step=first.step,
        fix=fix,
        location=location,
        variable=variable,
        bytes=held,
        evidence={
            "steps": [e.step for e in run[-16:]],
            "optimizer": optimizer,
            "params": info.params,
            "orphans": info.orphans,
            "orphan_bytes": info.orphan_bytes,
            "grad_bytes": info.grad_bytes,
            "state_bytes": info.state_bytes,
            "modules": list(info.modules),
            "created_at": info.created_at,
        },
    )


DETECTOR = Detector(KIND, (StaleOptimizerParams,), detect)
