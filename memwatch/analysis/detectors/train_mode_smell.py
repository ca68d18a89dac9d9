"""``train-mode-smell``: training state that does not fit the phase it runs in.

Two shapes, one kind (docs/train-mode-smell.md):

* **Training in eval mode** (``train-step-eval-mode`` events): optimizer steps updated a
  module that ran its forward in eval mode with dropout/batch-norm layers affected
  (an evaluation that called ``model.eval()`` and nothing called ``model.train()``
  after it). Dropout is off and batch norm normalises with frozen running statistics,
  so the model trains differently from what was meant. The finding points at the line
  that set eval mode. Frozen batch norm inside a training model, a frozen backbone with
  no trainable parameter in the optimizer, and a module without dropout/batch norm never
  produce the evidence (``collect/loop/train_mode.py``).
* **A debugging switch left on** (``global-flag-on`` events): anomaly detection during
  ``MIN_FLAG_STEPS`` training steps or more (every backward records and checks each
  node: several times slower), or the autograd profiler on for ``PROFILER_MIN_STEPS``
  training steps in a row (it keeps every event of the run in memory; a profiler
  schedule records a few steps, not the run).
"""

from __future__ import annotations

from collections import defaultdict

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.evidence import GlobalFlagOn, Observed, TrainStepEvalMode
from memwatch.records import Finding, Location

KIND = "train-mode-smell"

#: Training steps in eval mode before it is a finding (one step after an evaluation can
#: be a deliberate probe; a whole phase is not).
MIN_EVAL_STEPS = 3
MIN_FLAG_STEPS = 3  # training steps with anomaly detection on
PROFILER_MIN_STEPS = 50  # training steps in a row with the autograd profiler recording


def _where(location: Location | None) -> str:
    return f" at {location}" if location else ""


def _eval_mode_findings(events: list[Observed[TrainStepEvalMode]]) -> list[Finding]:
    by_site: dict[tuple[str, str], list[Observed[TrainStepEvalMode]]] = defaultdict(list)
    for seen in events:
        key = (str(seen.location) if seen.location else "", seen.evidence.model or "")
        by_site[key].append(seen)
    findings = []
    for group in by_site.values():
        steps = sorted({e.step for e in group})
        if len(steps) < MIN_EVAL_STEPS:
            continue
        first, last = group[0], group[-1]
        ev = last.evidence
        name = ev.variable or first.evidence.variable
        shown_name = f"`{name}`" if name else f"`{ev.model or 'the model'}`"
        layers = ", ".join(ev.eval_modules[:4]) + (
            f" and {ev.eval_module_count - 4} more" if ev.eval_module_count > 4 else ""
        )
        location = last.location
        if ev.set_before_watch or location is None:
            where = (
                "it was already in eval mode when the watch started (or `.training` was "
                "assigned directly): no `eval()` call on it was seen"
            )
        else:
            set_steps = sorted(
                {e.evidence.set_step for e in group if e.evidence.set_step is not None}
            )
            at_step = ""
            if len(set_steps) == 1:
                at_step = f" during step {set_steps[0]}"
            elif set_steps:
                at_step = f" (during steps {', '.join(map(str, set_steps[:6]))}"
                at_step += ", ...)" if len(set_steps) > 6 else ")"
            where = (
                f"it was put in eval mode by `{name or 'module'}.{ev.set_how or 'eval()'}`"
                f"{_where(location)}{at_step}, and nothing switched it back"
            )
        receiver = name or "model"
        findings.append(
            Finding(
                kind=KIND,
                severity="warning",
                title=f"{shown_name} trains in eval mode: {layers} off",
                detail=(
                    f"{len(steps)} optimizer steps (from step {steps[0]}) updated "
                    f"{shown_name} ({ev.model or 'a module'}) while it ran in eval mode: "
                    f"{ev.eval_module_count} of its {ev.stochastic_count} dropout/batch-norm "
                    "layers behave as in evaluation (dropout off, batch norm normalising "
                    "with frozen running statistics), so the model trains differently from "
                    f"what was meant; {where}."
                ),
                first_step=first.step,
                fix=(
                    f"Call `{receiver}.train()` when training resumes (at the top of the "
                    f"training loop or right after the evaluation that calls "
                    f"`{receiver}.eval()`)."
                ),
                location=location,
                variable=name,
                evidence={
                    "steps": len(steps),
                    "step_list": steps[-16:],
                    "model": ev.model,
                    "eval_modules": list(ev.eval_modules),
                    "eval_module_count": ev.eval_module_count,
                    "stochastic_count": ev.stochastic_count,
                    "stepped_params": ev.stepped_params,
                    "set_how": ev.set_how,
                    "set_step": ev.set_step,
                    "set_before_watch": ev.set_before_watch,
                },
            )
        )
    return findings


_FLAGS = {
    "anomaly-detection": (
        "Anomaly detection",
        "every backward records and checks each node's traceback, which makes training "
        "several times slower (PyTorch documents it as a debugging aid)",
        "Remove `torch.autograd.set_detect_anomaly(True)` (or the `detect_anomaly()` "
        "block) once debugging is done, or enable it only behind a debug flag.",
    ),
    "autograd-profiler": (
        "The autograd profiler",
        "it records every operator of the run and keeps the events in memory until it "
        "stops, which slows training and grows memory",
        "Profile a few steps (`torch.profiler.profile(schedule=...)` with `prof.step()`) "
        "instead of the whole run, or stop the profiler before training.",
    ),
}


def _flag_findings(events: list[Observed[GlobalFlagOn]]) -> list[Finding]:
    latest: dict[str, Observed[GlobalFlagOn]] = {}
    for seen in events:
        before = latest.get(seen.evidence.flag)
        if before is None or seen.evidence.steps_on >= before.evidence.steps_on:
            latest[seen.evidence.flag] = seen
    findings = []
    for flag, seen in latest.items():
        ev = seen.evidence
        if flag not in _FLAGS:
            continue
        longest = max(e.evidence.consecutive for e in events if e.evidence.flag == flag)
        if flag == "autograd-profiler" and longest < PROFILER_MIN_STEPS:
            continue
        if ev.steps_on < MIN_FLAG_STEPS:
            continue
        label, why, fix = _FLAGS[flag]
        if ev.set_before_watch or seen.location is None:
            where = "it was already on when the watch started"
        else:
            call = f"`{ev.set_call}(...)`" if ev.set_call else "a call"
            where = f"{call}{_where(seen.location)} turned it on"
        findings.append(
            Finding(
                kind=KIND,
                severity="warning",
                title=f"{label} is on during training ({ev.steps_on} training steps)",
                detail=(
                    f"{label} stayed on for {ev.steps_on} of {ev.steps_seen} training steps "
                    f"(from step {ev.first_step}): {why}; {where}."
                ),
                first_step=ev.first_step,
                fix=fix,
                location=seen.location,
                variable=ev.set_call,
                evidence={
                    "flag": flag,
                    "steps_on": ev.steps_on,
                    "steps_seen": ev.steps_seen,
                    "longest_run": longest,
                    "set_before_watch": ev.set_before_watch,
                },
            )
        )
    return findings


def detect(data: AnalysisInput) -> list[Finding]:
    return _eval_mode_findings(list(data.observed(TrainStepEvalMode))) + _flag_findings(
        list(data.observed(GlobalFlagOn))
    )


DETECTOR = Detector(KIND, (TrainStepEvalMode, GlobalFlagOn), detect)
