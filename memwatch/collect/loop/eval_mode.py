"""Evidence for ``eval-mode-missing``: evaluation forwards with dropout/batch-norm training.

Two ways a forward is evaluation: grad is disabled (``no_grad``: seen at the root forward
pre-hook), or its graph was never used by a backward (``no_backward``: known at the step
end from the forwards recorder). Either way, when the model still has Dropout/BatchNorm
submodules with ``training=True``, ``EvalPassTrainMode`` is recorded with how many
forwards and which modules, and the root module's own mode (``model_training``) with the
count of those layers in eval mode: a root in eval mode with some layers switched back to
train is a deliberate mix (Monte Carlo dropout), which the detector tells apart.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from memwatch.collect.frames import first_user_frame
from memwatch.collect.loop.common import Site, Thinning, call_at, location_of, site_of
from memwatch.evidence import EvalPassTrainMode

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost
    from memwatch.records import StepRecord


class EvalModeRecorder:
    """Counts no-grad root forwards of models with training-mode stochastic modules."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.no_grad_forwards = 0
        self._site: Site | None = None
        self._modules: tuple[str, ...] = ()
        self._model = ""
        self._model_training = True
        self._eval_count = 0
        self._train_set_without_grad = False

    def note_no_grad(
        self,
        module: Any,
        training: tuple[str, ...],
        stochastic: int,
        train_set_without_grad: bool = False,
        weight: int = 1,
    ) -> None:
        """A root forward under no_grad while ``training`` of its ``stochastic``
        dropout/batch-norm submodules were training (``train_set_without_grad``: the
        model was put in train mode while grad was disabled, see ``EvalPassTrainMode``);
        ``weight``: the forwards it stands for (``Tracker._thin``)."""
        self.no_grad_forwards += weight
        if self._site is None:
            self._site = site_of(first_user_frame(sys._getframe(2)))
            self._modules = training
            self._model = type(module).__name__
            self._model_training = bool(module.training)
            self._eval_count = stochastic - len(training)
            self._train_set_without_grad = train_set_without_grad

    def record_no_grad(
        self, tracker: ProbeHost, record: StepRecord, forwards: int, thinning: Thinning
    ) -> None:
        if self.no_grad_forwards:
            self.record(
                tracker,
                record,
                "no_grad",
                self.no_grad_forwards,
                self._site,
                self._modules,
                self._model,
                forwards,
                thinning,
                self._model_training,
                self._eval_count,
                self._train_set_without_grad,
            )

    @staticmethod
    def record(
        tracker: ProbeHost,
        record: StepRecord,
        how: str,
        count: int,
        site: Site | None,
        modules: tuple[str, ...],
        model: str,
        step_forwards: int,
        thinning: Thinning,
        model_training: bool = True,
        eval_module_count: int = 0,
        train_set_without_grad: bool = False,
    ) -> None:
        step = record.step
        if count <= 0 or not thinning.allow(f"eval-pass-train-mode/{how}", step):
            return
        call = call_at(site)
        evidence = EvalPassTrainMode(
            how=how,  # "no_grad": grad disabled; "no_backward": graph never used
            forwards=count,
            training_modules=tuple(modules[:6]),
            training_module_count=len(modules),
            step_forwards=step_forwards,
            step_backwards=record.backward_calls,
            model=model,
            variable=call.callee if call else None,
            model_training=model_training,
            eval_module_count=eval_module_count,
            train_set_without_grad=train_set_without_grad,
        )
        tracker.emit(evidence.event(step, location_of(site)))
