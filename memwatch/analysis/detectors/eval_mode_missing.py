"""``eval-mode-missing``: evaluation runs with dropout / batch-norm still in training mode.

Evidence (``eval-pass-train-mode`` events): root forwards that are evaluation (grad
disabled, or a graph that no backward used) while some Dropout/BatchNorm submodules had
``training=True``. Dropout then drops activations at random and BatchNorm normalises with
the batch's statistics and overwrites its running averages: the metrics are wrong and
the model changes while being evaluated.

A single no-grad forward per training step (a teacher / target network, a pseudo-label
pass) is not evaluation; it counts only when a step holds several such forwards or has
no backward at all.

Mixed modes: a module's own mode is the user's declared intent for its subtree. When the
root module is in eval mode (``model.eval()`` was called) and some layers are in training
mode anyway, they were switched back on purpose (Monte Carlo dropout: ``model.eval()``
then ``m.train()`` on the Dropout layers): not a finding. When the root is in training
mode, every Dropout/BatchNorm layer still training counts, even if others were put in
eval (frozen batch norm and then an evaluation without ``model.eval()``: dropout is
still on).
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import per_step_latest, site
from memwatch.evidence import EvalPassTrainMode, Observed
from memwatch.records import Finding

KIND = "eval-mode-missing"


def _is_evaluation(seen: Observed[EvalPassTrainMode]) -> bool:
    return seen.evidence.forwards >= 2 or seen.evidence.step_backwards == 0


def _forgot_eval(seen: Observed[EvalPassTrainMode]) -> bool:
    """The root module was left in training mode (see the module doc on mixed modes), and
    not put there on purpose for a no-grad pass (``model.train()`` called with grad
    disabled: ``swa_utils.update_bn`` recomputing BatchNorm statistics)."""
    return seen.evidence.model_training and not seen.evidence.train_set_without_grad


def detect(data: AnalysisInput) -> list[Finding]:
    events = [e for e in data.observed(EvalPassTrainMode) if _is_evaluation(e) and _forgot_eval(e)]
    forwards = sum(e.evidence.forwards for e in events)
    if forwards < 2:
        return []
    first = events[0]
    location, variable = site(first)
    name = variable or "model"
    modules = list(first.evidence.training_modules)
    count = first.evidence.training_module_count or len(modules)
    shown = ", ".join(modules[:4]) + (f" and {count - 4} more" if count > 4 else "")
    how = {e.evidence.how for e in events}
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
                f"{first.evidence.model or 'the model'} were in training mode: dropout "
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


DETECTOR = Detector(KIND, (EvalPassTrainMode,), detect)
