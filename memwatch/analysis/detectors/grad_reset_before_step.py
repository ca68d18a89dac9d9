"""``grad-reset-before-step``: gradients reset before any optimizer used them.

Evidence (``grad-reset`` events, recorded at the optimizer's step): resets of the
optimizer's gradients (``zero_grad`` of the optimizer or of a module holding its
parameters, or ``p.grad = None`` by hand) discarded ``passes_discarded`` backward passes
that had written into its parameters and that no optimizer had stepped yet, and then the
optimizer stepped (``passes_kept`` passes reached the step). Either the step updates with
zero (or no) gradients, or gradient accumulation keeps only the passes after the last
reset. Seen at ``MIN_STEPS`` steps, it is an error: the order is wrong by construction.
A reset that no step of that optimizer follows (gradients computed to be read, then
cleared) is never recorded; a backward that writes no ``.grad`` (``torch.autograd.grad``,
``torch.func``) is not a pass at all.
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import site
from memwatch.evidence import GradReset
from memwatch.records import Finding, Location
from memwatch.units import format_size

KIND = "grad-reset-before-step"

#: Backward passes a reset must discard, unused, before the optimizer's step.
MIN_PASSES_DISCARDED = 1
#: Steps at which such resets are seen: a single one is a deliberate one-off (a saliency or
#: pruning pass whose gradients are read and cleared before training starts); a loop in the
#: wrong order repeats it at every step (or every accumulation).
MIN_STEPS = 2


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith('s') else 's'}"


def detect(data: AnalysisInput) -> list[Finding]:
    events = [
        e for e in data.observed(GradReset) if e.evidence.passes_discarded >= MIN_PASSES_DISCARDED
    ]
    if len({e.step for e in events}) < MIN_STEPS:
        return []
    first = events[0]
    latest = events[-1]  # the steady state (an optimizer followed late misses passes)
    location, variable = site(latest)
    info = latest.evidence
    via = str(info.via)
    by_hand = not via.endswith("zero_grad")
    call = f"{variable}.zero_grad()" if variable else (via if by_hand else f"{via}()")
    optimizer = info.optimizer or "the optimizer"
    step_at = Location.from_dict(info.step_location)
    where = f" at {location}" if location else ""
    step_where = f" at {step_at}" if step_at else ""
    discarded = info.passes_discarded
    kept = info.passes_kept
    size = f" ({format_size(info.grad_bytes)} of gradients each time)" if info.grad_bytes else ""
    if kept <= 0:
        none, checked = info.grads_none, info.params_checked
        state = (
            f"{none} of the {checked} parameters checked had no gradient left"
            if none
            else "the gradients were zeros"
        )
        title = f"`{call}` wipes the gradients between backward and {optimizer}.step()"
        effect = (
            f"{state} when the optimizer stepped, so the update ignored the gradients just "
            "computed and the model does not learn."
        )
    else:
        title = (
            f"`{call}` discards {_plural(discarded, 'backward pass')} before "
            f"{optimizer}.step() uses them"
        )
        effect = (
            f"the step used only the last {_plural(kept, 'pass')} of "
            f"{discarded + kept}: gradient accumulation is broken, each update sees "
            f"{kept}/{discarded + kept} of the batch it was meant to average."
        )
    inside = (
        " inside the optimizer's step (after the closure's backward)" if info.inside_step else ""
    )
    return [
        Finding(
            kind=KIND,
            severity="error",
            title=title,
            detail=(
                f"In {len(events)} step{'s' if len(events) != 1 else ''} (first: step "
                f"{first.step}), {call}{where} reset {optimizer}'s gradients{inside} after "
                f"{_plural(discarded, 'backward pass')} had written them{size} and before "
                f"the {optimizer} step{step_where} used them; {effect}"
            ),
            first_step=first.step,
            fix=(
                f"Call `{variable or 'optimizer'}.zero_grad()` before the forward/backward "
                "(or right after `optimizer.step()`), not between backward and step."
                if kept <= 0
                else f"Call `{variable or 'optimizer'}.zero_grad()` once per update: right "
                "after `optimizer.step()` (inside the `if` that steps every k batches), not "
                "before each micro-batch's backward."
            ),
            location=location,
            variable=variable,
            evidence={
                "steps": [e.step for e in events[-16:]],
                "via": via,
                "optimizer": optimizer,
                "grads_none": info.grads_none,
                "params_checked": info.params_checked,
                "step_location": info.step_location,
                "passes_discarded": discarded,
                "passes_kept": kept,
                "resets": info.resets,
                "grad_bytes": info.grad_bytes,
            },
        )
    ]


DETECTOR = Detector(KIND, (GradReset,), detect)
