"""``LoopProbe``: the one probe riding the tracker's hooks for the training-loop recorders.

Each evidence kind has its own recorder module in this package (see ``__init__``); this
probe only dispatches the hooks to them and keeps what they share: the order of
backward and optimizer steps, the root forwards of the step, and whether the current
root forward is part of the previous one's pass. It is one probe rather than seven
because every tracker hook call costs a Python call per probe, and the common path of a
healthy loop (one root forward, one backward, one step) must stay a few attribute reads:
recorders are called only when their cheap condition holds.

A criterion module (``nn.CrossEntropyLoss()``, any ``_Loss``) and a root module fed the
previous one's output (``head(backbone(x))``, a custom loss ``nn.Module``) belong to the
same pass: they are not counted as further model forwards.
"""

from __future__ import annotations

from types import FrameType
from typing import TYPE_CHECKING, Any

import torch

from memwatch.collect.loop.common import LoopOrder, StochasticModules, Thinning, module_base
from memwatch.collect.loop.conv_shapes import ConvShapesRecorder, cudnn_benchmark
from memwatch.collect.loop.eval_mode import EvalModeRecorder
from memwatch.collect.loop.forwards import ForwardsRecorder
from memwatch.collect.loop.grad_reset import GradResetRecorder
from memwatch.collect.loop.microbatch import MicrobatchRecorder
from memwatch.collect.loop.retain import RetainRecorder
from memwatch.collect.loop.stale_params import StaleParamsRecorder
from memwatch.collect.loop.train_mode import TrainModeRecorder
from memwatch.collect.loop.unbatched import UnbatchedRecorder
from memwatch.collect.probe import BackwardCall, Probe

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost
    from memwatch.records import StepRecord

_grad_enabled = torch.is_grad_enabled
_Tensor = torch.Tensor
_LOSS = module_base(
    torch.nn.modules.loss,
    "_Loss",
    tuple(
        value
        for name, value in vars(torch.nn).items()
        if name.endswith("Loss") and isinstance(value, type) and issubclass(value, torch.nn.Module)
    ),
)


class LoopProbe(Probe):
    """Dispatches forward/backward/step hooks to the loop recorders (see module doc)."""

    name = "loop"

    def __init__(self) -> None:
        self._order = LoopOrder()
        self._thinning = Thinning()
        self._modules = StochasticModules()
        self.grad_reset = GradResetRecorder(self._thinning)
        self.forwards = ForwardsRecorder()
        self.retain = RetainRecorder()
        self.eval_mode = EvalModeRecorder()
        self.microbatch = MicrobatchRecorder()
        self.unbatched = UnbatchedRecorder()
        self.shapes = ConvShapesRecorder()
        self.stale_params = StaleParamsRecorder()
        self.train_mode = TrainModeRecorder(self._modules)
        self._cur_unbatched = False
        self._skip = False  # the current root forward is a loss module
        self._continues = False  # ... or takes the previous root forward's output
        self._step_forwards = 0  # root forwards of models (loss modules not counted)
        self._dirty = False  # anything to record at this step's end (besides pending)

    def on_start(self, tracker: ProbeHost) -> None:
        self.grad_reset.install(tracker)
        self.stale_params.install(tracker)
        self.train_mode.install(tracker)

    # -- forwards -------------------------------------------------------------------------
    def on_root_forward_pre(self, tracker: ProbeHost, module: Any, args: Any) -> None:
        self._cur_unbatched = False
        self.stale_params.note_forward(module, tracker.step)
        if isinstance(module, _LOSS):  # criterion(out, y): part of the pass, not a model call
            self._skip = True
            return
        self._skip = False
        first = args[0] if args else None
        last = self.forwards.last_out
        # head(backbone(x)), criterion modules that are not _Loss: one pass, not two forwards
        self._continues = last is not None and first is not None and first is last()
        if self._continues:
            return
        weight = tracker.forward_weight  # forwards this one stands for (Tracker._thin)
        self._step_forwards += weight
        if isinstance(first, _Tensor):
            dim = first.dim()
            if dim == 1 or (dim >= 2 and first.size(0) == 1):
                self._cur_unbatched = True
                self._dirty = True
                self.unbatched.note(module, first, weight)
            if dim >= 2 and cudnn_benchmark() and self.shapes.note(module, first):
                self._dirty = True
        if not _grad_enabled():
            training = self._modules.training(module)
            if training:
                self._dirty = True
                stochastic = len(self._modules.of(module))
                deliberate = self.train_mode.train_set_without_grad(module)
                self.eval_mode.note_no_grad(module, training, stochastic, deliberate, weight)
        elif not module.training:  # training an eval-mode model? (train_mode.py)
            self._dirty = True
            self.train_mode.note_eval_forward(module)

    def on_root_forward_post(
        self, tracker: ProbeHost, module: Any, output: Any, saved_delta: int | None
    ) -> None:
        # A counted forward that saved nothing built no graph worth following. An uncounted
        # one (sampling) is followed all the same, its bytes unknown: an evaluation pass
        # without no_grad on a step that counts nothing is then still recorded, and its
        # evidence makes the next steps counted (sampling.py).
        if self._skip or (saved_delta is not None and saved_delta <= 0) or not _grad_enabled():
            return
        left = self.forwards.after_forward(
            tracker,
            module,
            output,
            saved_delta,
            self._continues,
            self._cur_unbatched,
            self._order.last_backward >= 0,
        )
        if left:
            self._dirty = True

    # -- backward -------------------------------------------------------------------------
    def on_backward(self, tracker: ProbeHost, call: BackwardCall) -> None:
        self._order.backward()
        self.grad_reset.after_backward(call)
        if self.train_mode.pending:
            self.train_mode.on_backward()
        if call.retain_graph:
            self._dirty = True
            self.retain.note(call)
        consumed, left = self.forwards.on_backward()
        if left:
            self._dirty = True
        if len(consumed) >= 3 and self.microbatch.check(call, consumed):
            self._dirty = True

    # -- step end -------------------------------------------------------------------------
    def on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        if not self._dirty and not self.forwards.pending:  # a healthy step: nothing to say
            self._step_forwards = 0
            return
        step, forwards, thinning = record.step, self._step_forwards, self._thinning
        self.forwards.at_step_end(record, self._order.last_backward >= 0)
        self.retain.record(tracker, record, thinning)
        self.forwards.record(tracker, record, forwards, self._modules, thinning)
        self.eval_mode.record_no_grad(tracker, record, forwards, thinning)
        self.microbatch.record(tracker, step, thinning)
        self.unbatched.record(tracker, step, forwards, thinning)
        self.shapes.record(tracker, step, thinning)
        self.train_mode.record(tracker, record, thinning)
        self._reset_step()

    def _reset_step(self) -> None:
        self._dirty = False
        self._step_forwards = 0
        self.forwards.reset()
        self.retain.reset()
        self.eval_mode.reset()
        self.microbatch.reset()
        self.unbatched.reset()
        self.shapes.reset()
        self.train_mode.reset()
