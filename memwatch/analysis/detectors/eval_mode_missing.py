"""``eval-mode-missing``: evaluation runs with dropout / batch-norm still in training mode.

Evidence (``eval-pass-train-mode`` events): root forwards that are evaluation (grad
disabled, or a graph that no backward used) while some Dropout/BatchNorm submodules had
``training=True``. Dropout then drops activations at random and BatchNorm normalises with
the batch's statistics and overwrites its running averages: the metrics are wrong and
the model changes while being evaluated.

A single no-grad forward per training step (a teacher / target network, a pseudo-label
pass) is not evaluation; it counts only when a step holds several such forwards or has
no backward at all.
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput
from memwatch.analysis.detectors.loop_common import per_step_latest, site
from memwatch.records import Event, Finding

KIND = "eval-mode-missing"
EVENT = "eval-pass-train-mode"


def _is_evaluation(event: Event) -> bool:
    data = event.data
    return int(data.get("forwards", 0)) >= 2 or int(data.get("step_backwards", 1)) == 0


def detect(data: AnalysisInput) -> list[Finding]:
    events = [e for e in data.events_of(EVENT) if _is_evaluation(e)]
    forwards = sum(int(e.data.get("forwards", 0)) for e in events)
    if forwards < 2:
        return []
    first = events[0]
    location, variable = site(first)
    name = variable or "model"
    modules = list(first.data.get("training_modules", []))
    count = int(first.data.get("training_module_count", len(modules)))
    shown = ", ".join(modules[:4]) + (f" and {count - 4} more" if count > 4 else "")
    how = {str(e.data.get("how")) for e in events}
    mode = "under no_grad" if how == {"no_grad"} else "without backward"
    where = f" at {location}" if location else ""
    steps = per_step_latest(events)
    return [
        Finding(
            kind=KIND,
            severity="warning",
            title=f"`{name}` is evaluated in training mode: {shown} still active",
            detail=(
                f"{forwards} evaluation forwards{where} ({mode}) ran while {count} "
                f"dropout/batch-norm module{'s' if count != 1 else ''} of "
                f"{first.data.get('model') or 'the model'} were in training mode: dropout "
                "drops activations at random and batch norm uses the batch's statistics and "
                "updates its running averages, so results are noisy and the model changes."
            ),
            first_step=first.step,
            fix=f"Call `{name}.eval()` before evaluating and `{name}.train()` after.",
            location=location,
            variable=variable,
            evidence={
                "forwards": forwards,
                "steps": [e.step for e in steps[-16:]],
                "training_modules": modules,
                "training_module_count": count,
                "how": sorted(how),
            },
        )
    ]
