"""``grad-reset-before-step``: gradients are zeroed between backward and optimizer.step().

Evidence (``grad-reset`` events): ``zero_grad`` (of an optimizer or a module) ran after a
backward and before the next optimizer step, and it reached the stepping optimizer's
parameters (the same optimizer, a module holding its parameters, or its gradients found
``None`` at the step). The step then updates with zero (or no) gradients: the model does
not learn, silently. One occurrence is enough: the order is wrong by construction.
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import site
from memwatch.evidence import GradReset
from memwatch.records import Finding, Location

KIND = "grad-reset-before-step"


def detect(data: AnalysisInput) -> list[Finding]:
    events = data.observed(GradReset)
    if not events:
        return []
    first = events[0]
    location, variable = site(first)
    info = first.evidence
    via = str(info.via)
    call = f"{variable}.zero_grad()" if variable else f"{via}()"
    optimizer = info.optimizer or "the optimizer"
    step_at = Location.from_dict(info.step_location)
    where = f" at {location}" if location else ""
    step_where = f" at {step_at}" if step_at else ""
    none = info.grads_none
    checked = info.params_checked
    state = (
        f"{none} of the {checked} parameters checked had no gradient left"
        if none
        else "the gradients were zeros"
    )
    return [
        Finding(
            kind=KIND,
            severity="error",
            title=f"`{call}` wipes the gradients between backward and {optimizer}.step()",
            detail=(
                f"In {len(events)} step{'s' if len(events) != 1 else ''} (first: step "
                f"{first.step}), {call}{where} ran after backward and before the "
                f"{optimizer} step{step_where}; {state} when the optimizer stepped, so the "
                "update ignored the gradients just computed and the model does not learn."
            ),
            first_step=first.step,
            fix=(
                f"Call `{variable or 'optimizer'}.zero_grad()` before the forward/backward "
                "(or right after `optimizer.step()`), not between backward and step."
            ),
            location=location,
            variable=variable,
            evidence={
                "steps": [e.step for e in events[-16:]],
                "via": via,
                "optimizer": optimizer,
                "grads_none": none,
                "params_checked": checked,
                "step_location": info.step_location,
            },
        )
    ]


DETECTOR = Detector(KIND, (GradReset,), detect)
