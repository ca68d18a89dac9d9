"""``grad-never-reset``: an optimizer's gradients are not reset between its steps.

Evidence (``grad-carried-over`` events, at an optimizer's step): backward added this
step's gradients on top of gradients that an earlier step of the same optimizer had
already used, with no reset of its parameters' gradients in between (no ``zero_grad`` of
the optimizer or of a module holding them, no ``p.grad = None`` or new ``p.grad`` by
hand). Each update then follows the sum of every earlier step's gradients since the last
reset, not this step's: the effective learning rate grows with every step and the
direction comes from old weights.

Deliberate gradient accumulation (k backward passes, one step, one reset) never carries
gradients over a step, nor does an optimizer whose gradients are set by hand, nor LBFGS
(its closure resets). A finding needs ``MIN_CARRIED_STEPS`` consecutive carried steps of
one optimizer: a warning, since some programs (rarely) mean it.
"""

from __future__ import annotations

from collections import defaultdict

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.evidence import GradCarriedOver, Observed
from memwatch.records import Finding, Location
from memwatch.units import format_size

KIND = "grad-never-reset"

#: Consecutive steps of one optimizer on carried-over gradients before it is reported.
MIN_CARRIED_STEPS = 3

Seen = Observed[GradCarriedOver]


def detect(data: AnalysisInput) -> list[Finding]:
    by_optimizer: dict[int, list[Seen]] = defaultdict(list)
    for seen in data.observed(GradCarriedOver):
        by_optimizer[seen.evidence.optimizer_serial].append(seen)
    findings = []
    for events in by_optimizer.values():
        longest = max(events, key=lambda e: e.evidence.carried_steps)
        if longest.evidence.carried_steps < MIN_CARRIED_STEPS:
            continue
        findings.append(_finding(events, longest))
    return findings


def _finding(events: list[Seen], longest: Seen) -> Finding:
    latest = events[-1]
    info = latest.evidence
    carried = longest.evidence.carried_steps
    passes = max(e.evidence.passes_in_sum for e in events)
    optimizer = info.optimizer or "the optimizer"
    name = f"`{info.variable}`" if info.variable else optimizer
    reset_at = Location.from_dict(info.reset_location)
    step_at = latest.location
    size = f" ({format_size(info.grad_bytes)} of gradients)" if info.grad_bytes else ""
    first = events[0]  # its first step on carried-over gradients
    if info.reset_call:
        title = (
            f"`{info.reset_call}` resets {name}'s gradients only once every "
            f"{carried + 1} steps: each step adds to the earlier steps' gradients"
        )
        reset_text = (
            f"its gradients were reset only by {info.reset_call}"
            f"{f' at {reset_at}' if reset_at else ''}, {carried + 1} steps apart"
        )
        location = reset_at or step_at
    else:
        title = (
            f"Nothing resets the gradients of {name} ({optimizer}) between its steps: "
            "each update uses the sum of all earlier gradients"
        )
        reset_text = "no zero_grad (or p.grad = None) reached its parameters between steps"
        location = step_at
    step_where = f" at {step_at}" if step_at else ""
    return Finding(
        kind=KIND,
        severity="warning",
        title=title,
        detail=(
            f"{carried} consecutive steps of {optimizer}{step_where} (first: step "
            f"{first.step}) stepped on gradients an earlier step had already used{size}: "
            f"{reset_text}, and backward adds into `.grad`. By step {latest.step} the "
            f"gradient summed {passes} backward passes where one step's were meant: up to "
            f"{passes}x the intended magnitude when they point alike, and directions "
            "computed at older weights, so training is unstable or silently worse."
        ),
        first_step=first.step,
        fix=(
            f"Call `{info.variable or 'optimizer'}.zero_grad()` once per optimizer step "
            "(right after `step()`, or before the forward); to accumulate k batches on "
            "purpose, reset after every k-th step."
        ),
        location=location,
        variable=info.variable,
        evidence={
            "optimizer": optimizer,
            "carried_steps": carried,
            "passes_in_sum": passes,
            "steps": [e.step for e in events[-16:]],
            "resets": info.resets,
            "reset_call": info.reset_call,
            "reset_location": info.reset_location,
            "grad_bytes": info.grad_bytes,
        },
    )


DETECTOR = Detector(KIND, (GradCarriedOver,), detect)
