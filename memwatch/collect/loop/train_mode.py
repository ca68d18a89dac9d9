"""Evidence for ``train-mode-smell`` (modules): optimizer steps that train a module whose
dropout/batch-norm layers are in eval mode, with the line that switched it to eval.

Three cheap observations, each on a path a healthy loop rarely takes:

* ``nn.Module.train`` is wrapped (``ProbeHost.patch``; ``eval()`` calls ``train(False)``):
  the outermost call remembers, per module (weakly), the user's line, the mode and the
  step. The recursion into the children is not recorded (one frame walk per user call).
* ``note_eval_forward``: a root forward with grad enabled while the root module itself is
  in eval mode (one attribute read per root forward, done by ``LoopProbe``).
* at a backward, those modules still in eval mode are kept. An optimizer step pre-hook
  remembers (weakly) which optimizers step during the step; at the step end, when some
  modules are kept, their parameters those optimizers stepped are counted (requires grad,
  has a gradient): a frozen backbone (no trainable parameter in the optimizer) drops out.
  Counted at the step end, not in the hook: with a closure (Lightning's automatic
  optimization, LBFGS) the forward and backward run inside ``step()``, after the hook.

At the step end a ``TrainStepEvalMode`` is recorded per such module that has
dropout/batch-norm layers in eval mode. Frozen batch norm inside a training model (only
the BN submodules in eval, the root in train mode) never reaches here: the root forward is
in train mode. Whether the steps are many enough to matter is the detector's call.
"""

from __future__ import annotations

import functools
import sys
import weakref
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from memwatch.collect.frames import first_user_frame, is_user_file
from memwatch.collect.loop.common import (
    Site,
    StochasticModules,
    Thinning,
    call_at,
    location_of,
    module_base,
    site_of,
)
from memwatch.evidence import TrainStepEvalMode

if TYPE_CHECKING:
    from types import FrameType

    from memwatch.collect.probe import ProbeHost
    from memwatch.records import StepRecord

_is_compiling = torch.compiler.is_compiling
_nn = torch.nn
_INSTANCE_NORM = module_base(
    _nn.modules.instancenorm,
    "_InstanceNorm",
    (_nn.InstanceNorm1d, _nn.InstanceNorm2d, _nn.InstanceNorm3d),
)
MAX_MODULES = 8  # eval-mode root modules followed per step (more is not a training step)
SHOWN_MODULES = 6  # eval-mode layer names kept in the evidence


class _ModeSet:
    """Where a module's mode was last set: the user's line (no frame kept), the mode, the
    step, ``eval()`` or ``train(...)``, and a serial number that orders the calls."""

    __slots__ = ("grad", "how", "mode", "serial", "site", "step")

    def __init__(
        self, site: Site | None, mode: bool, step: int, how: str, serial: int, grad: bool = True
    ) -> None:
        self.site = site
        self.mode = mode
        self.step = step
        self.how = how
        self.serial = serial
        self.grad = grad  # whether grad was enabled when the mode was set


class TrainModeRecorder:
    """Finds optimizer steps on modules forwarded in eval mode (module doc)."""

    def __init__(self, modules: StochasticModules) -> None:
        self._modules = modules
        self._tracker: ProbeHost | None = None
        # Mode changes the user's code made itself (``model.eval()`` in a user file), and
        # those a library made for it (Lightning's validation loop): the user's are named
        # first, since a library that restores modes by assignment leaves no call behind.
        self._set: weakref.WeakKeyDictionary[Any, _ModeSet] = weakref.WeakKeyDictionary()
        self._set_by_library: weakref.WeakKeyDictionary[Any, _ModeSet] = weakref.WeakKeyDictionary()
        self._serial = 0
        self._depth = 0  # inside a wrapped train(): the children's calls are not recorded
        self._steps: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._where: dict[int, tuple[int, Any, _ModeSet | None]] = {}  # id -> (serial, owner)
        self.pending: list[weakref.ref[Any]] = []  # eval-mode root forwards since a backward
        self._backwarded: dict[int, weakref.ref[Any]] = {}
        self._stepping: list[weakref.ref[Any]] = []  # optimizers stepping at _stepping_step
        self._stepping_step = -1
        self._failed = False  # a wrapped call raised in here: stop following (one notice)

    # -- installation ---------------------------------------------------------------------
    def install(self, tracker: ProbeHost) -> None:
        self._tracker = tracker
        tracker.patch(torch.nn.Module, "train", self._wrap_train(torch.nn.Module.train))
        tracker.add_handle(register_optimizer_step_pre_hook(self._optimizer_pre))

    def _wrap_train(self, original: Any) -> Any:
        recorder = self

        @functools.wraps(original)
        def train(module: Any, mode: bool = True) -> Any:
            if recorder._depth:
                return original(module, mode)
            recorder._depth += 1
            try:
                result = original(module, mode)
            finally:
                recorder._depth -= 1
            recorder._note_set(module, mode, sys._getframe(1))
            return result

        return train

    def _note_set(self, module: Any, mode: Any, caller: FrameType) -> None:
        tracker = self._tracker
        if tracker is None or tracker.off or self._failed or _is_compiling():
            return
        try:
            how = "train(False)" if not mode else "train()"
            code = caller.f_code
            direct: FrameType | None = caller
            if code.co_name == "eval" and not is_user_file(code.co_filename):
                how = "eval()"
                direct = caller.f_back
            self._serial += 1
            site = site_of(first_user_frame(caller))
            seen = _ModeSet(
                site, bool(mode), tracker.step, how, self._serial, torch.is_grad_enabled()
            )
            by_user = direct is not None and is_user_file(direct.f_code.co_filename)
            (self._set if by_user else self._set_by_library)[module] = seen
        except TypeError:  # a module that cannot be weakly referenced: not followed
            pass
        except Exception as exc:
            self._failed = True
            tracker.fail("the loop probe (module modes)", exc)

    def train_set_without_grad(self, module: Any) -> bool:
        """Whether the last mode set on ``module`` (by anyone) was train mode, set while
        grad was disabled: a no-grad pass deliberately run in training mode."""
        latest = None
        for seen in (self._set, self._set_by_library):
            mode_set = seen.get(module)
            if mode_set is not None and (latest is None or mode_set.serial > latest.serial):
                latest = mode_set
        return latest is not None and latest.mode and not latest.grad

    # -- the loop -------------------------------------------------------------------------
    def note_eval_forward(self, module: Any) -> None:
        """A root forward with grad enabled while ``module.training`` is False."""
        pending = self.pending
        if len(pending) >= MAX_MODULES or any(r() is module for r in pending):
            return
        try:
            pending.append(weakref.ref(module))
        except TypeError:
            pass

    def on_backward(self) -> None:
        """The modules forwarded in eval mode that still are: this backward trains them."""
        for ref in self.pending:
            module = ref()
            if module is not None and not module.training:
                self._backwarded[id(module)] = ref
        self.pending.clear()

    def _optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """Which optimizers step during this step (a few attribute reads per step)."""
        tracker = self._tracker
        if tracker is None or tracker.off or _is_compiling():
            return
        step = tracker.step
        if self._stepping_step != step:
            self._stepping_step = step
            self._stepping = []
        if len(self._stepping) < MAX_MODULES:
            try:
                self._stepping.append(weakref.ref(optimizer))
            except TypeError:
                pass

    def _stepped_params(self, module: Any, step: int) -> int:
        """``module``'s parameters that the optimizers of ``step`` stepped."""
        if self._stepping_step != step:
            return 0
        stepped = {
            id(p)
            for ref in self._stepping
            if (optimizer := ref()) is not None
            for group in optimizer.param_groups
            for p in group["params"]
            if p.requires_grad and p.grad is not None
        }
        return sum(1 for p in module.parameters() if id(p) in stepped)

    # -- the step end ---------------------------------------------------------------------
    def record(self, tracker: ProbeHost, record: StepRecord, thinning: Thinning) -> None:
        for ref in self._backwarded.values():
            module = ref()
            if module is None or module.training:
                continue
            count = self._stepped_params(module, record.step)
            if not count:
                continue  # no optimizer of this step trains it (a frozen or fixed module)
            layers = self._mode_dependent(module)
            in_eval = [name for name, m in layers if not m.training]
            if not in_eval:
                continue  # no mode-dependent layer is affected
            steps = self._steps.get(module, 0) + 1
            self._steps[module] = steps
            if not thinning.allow("train-step-eval-mode", record.step):
                continue
            where = self._where_set(module)
            site = where.site if where is not None else None
            call = call_at(site, "eval" if where is not None and where.how == "eval()" else "train")
            evidence = TrainStepEvalMode(
                model=type(module).__name__,
                variable=call.receiver if call is not None else None,
                eval_modules=tuple(in_eval[:SHOWN_MODULES]),
                eval_module_count=len(in_eval),
                stochastic_count=len(layers),
                stepped_params=count,
                steps=steps,
                set_how=where.how if where is not None else None,
                set_step=where.step if where is not None else None,
                set_before_watch=where is None,
            )
            tracker.emit(evidence.event(record.step, location_of(site)))

    def _mode_dependent(self, module: Any) -> tuple[tuple[str, Any], ...]:
        """Its submodules whose output depends on the mode: Dropout/BatchNorm, and the layers
        with a dropout or running statistics of their own (an LSTM with ``dropout``,
        ``MultiheadAttention(dropout=...)``, InstanceNorm tracking running statistics).
        Walked on the rare path only (a step that trained a module in eval mode)."""
        found = list(self._modules.of(module))
        for name, m in module.named_modules():
            own = (
                (isinstance(m, _nn.RNNBase) and m.dropout > 0 and m.num_layers > 1)
                or (isinstance(m, _nn.MultiheadAttention) and m.dropout > 0)
                or (isinstance(m, _INSTANCE_NORM) and bool(getattr(m, "track_running_stats", 0)))
            )
            if own:
                found.append((f"{name} ({type(m).__name__})" if name else type(m).__name__, m))
        return tuple(found)

    def _where_set(self, module: Any) -> _ModeSet | None:
        """The latest eval()/train(False) seen on ``module`` or on a module containing it
        (``wrapper.eval()`` with ``wrapper.encoder`` forwarded), the user's own calls first.
        Cached until a mode is set."""
        cached = self._where.get(id(module))
        if cached is not None and cached[0] == self._serial and cached[1]() is module:
            return cached[2]
        best = _latest_eval(self._set, module)
        if best is None:
            best = _latest_eval(self._set_by_library, module)
        self._where[id(module)] = (self._serial, weakref.ref(module), best)
        if len(self._where) > 4 * MAX_MODULES:
            self._where = {k: v for k, v in self._where.items() if v[1]() is not None}
        return best

    def reset(self) -> None:
        self.pending.clear()
        self._backwarded.clear()


def _latest_eval(seen: weakref.WeakKeyDictionary[Any, _ModeSet], module: Any) -> _ModeSet | None:
    """The latest eval()/train(False) in ``seen`` on ``module`` or a module containing it;
    None when ``module``'s own latest call there was train()."""
    own = seen.get(module)
    if own is not None and not own.mode:
        return own
    best: _ModeSet | None = None
    for owner, mode_set in list(seen.items()):
        if mode_set.mode or owner is module or (best is not None and mode_set.serial < best.serial):
            continue
        if own is not None and mode_set.serial < own.serial:
            continue  # switched back to train() on its own since
        if any(m is module for m in owner.modules()):
            best = mode_set
    return best
