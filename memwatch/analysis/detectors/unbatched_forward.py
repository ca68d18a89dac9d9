"""``unbatched-forward``: the model is called many times per step on single samples.

Evidence (``unbatched-forwards`` events, one per step with ≥ 4 such calls): root forwards
whose first input is 1-D or has a batch dimension of 1, how many forwards the step had,
and how many of those inputs were rows of one tensor (views of the same base tensor as the
previous call).

Calling a model once per sample runs every kernel with a tiny batch and builds one graph
per sample (more saved tensors, autograd overhead per sample). It fires when a step has
≥ 8 such calls, they are ≥ 80 % of its forwards, and the batch already exists: at least
half of the inputs are rows of one tensor, or most of the checked inputs are elements of
one list the caller holds (samples of different sizes, ``for img in imgs``). Sequential
work whose inputs are fresh tensors one by one (a policy acting in an environment) cannot
be batched and stays silent.
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import per_step_latest, site
from memwatch.evidence import Observed, UnbatchedForwards
from memwatch.records import Finding

KIND = "unbatched-forward"
MIN_CALLS = 8


def _qualifies(seen: Observed[UnbatchedForwards]) -> bool:
    data = seen.evidence
    calls = data.calls
    forwards = data.forwards if data.forwards is not None else calls
    batch_exists = data.same_base >= 0.5 * calls or (
        data.listed_checked > 0 and data.listed * 3 >= data.listed_checked * 2
    )
    return calls >= MIN_CALLS and calls >= 0.8 * forwards and batch_exists


def detect(data: AnalysisInput) -> list[Finding]:
    events = [e for e in per_step_latest(data.observed(UnbatchedForwards)) if _qualifies(e)]
    if len(events) < 2 and not (data.final and events):
        return []
    first = events[0]
    location, variable = site(first)
    name = variable or "model"
    calls = sorted(e.evidence.calls for e in events)
    typical = calls[len(calls) // 2]
    shape = tuple(first.evidence.shape)
    where = f" at {location}" if location else ""
    last = events[-1].step
    recorded = (
        f"{len(events)} recorded steps (steps {first.step} to {last})"
        if len(events) > 1
        else f"step {first.step}"
    )
    return [
        Finding(
            kind=KIND,
            severity="warning",
            title=f"`{name}` is called {typical} times per step on single samples (shape {shape})",
            detail=(
                f"In {recorded}, {name}{where} ran "
                f"about {typical} forward passes of one sample each, on samples that are "
                "already together (rows of one tensor or items of one list): "
                "every kernel runs with a batch of 1 and autograd builds and keeps one graph "
                "per sample until the backward."
            ),
            first_step=first.step,
            fix=(
                f"Stack the samples into one batch and call `{name}` once per step "
                f"(`{name}(batch)` instead of a loop over its rows)."
            ),
            location=location,
            variable=variable,
            evidence={
                "steps": [e.step for e in events[-16:]],
                "calls_per_step": typical,
                "forwards_per_step": first.evidence.forwards,
                "rows_of_one_tensor": first.evidence.same_base,
                "elements_of_one_list": first.evidence.listed,
                "input_shape": list(shape),
            },
        )
    ]


DETECTOR = Detector(KIND, (UnbatchedForwards,), detect)
