"""Evidence for ``grad-reset-before-step``: ``zero_grad`` between backward and step.

Installed besides the tracker's hooks: global optimizer step pre- and post-hooks (a
backward run by a closure inside ``step()`` is consumed by that step) and wrappers
around ``Optimizer.zero_grad`` / ``Module.zero_grad`` (one comparison per call when the
order is right), both removed when the watch stops (``ProbeHost.add_handle``/``patch``).
A ``zero_grad`` after a backward is remembered (at most 8); at the next optimizer step,
if it reached that optimizer's parameters (the same optimizer, a module holding its
first parameter, or all checked gradients are ``None``), a ``GradReset`` is recorded.
The patched ``zero_grad`` and the pre-hook catch their own errors.
"""

from __future__ import annotations

import functools
import sys
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from memwatch.collect.frames import first_user_frame
from memwatch.collect.loop.common import LoopOrder, Site, Thinning, call_at, location_of, site_of
from memwatch.evidence import GradReset

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost

_is_compiling = torch.compiler.is_compiling


class GradResetRecorder:
    """Remembers late ``zero_grad`` calls; checks them at the optimizer step."""

    def __init__(self, order: LoopOrder, thinning: Thinning) -> None:
        self._order = order
        self._thinning = thinning
        self._tracker: ProbeHost | None = None
        self._zeros: list[tuple[weakref.ref[Any], str, Site | None]] = []

    def install(self, tracker: ProbeHost) -> None:
        self._tracker = tracker
        tracker.add_handle(register_optimizer_step_pre_hook(self._optimizer_pre))
        tracker.add_handle(register_optimizer_step_post_hook(self._optimizer_post))
        for owner, kind in ((torch.optim.Optimizer, "optimizer"), (torch.nn.Module, "module")):
            tracker.patch(owner, "zero_grad", self._wrap_zero_grad(owner.zero_grad, kind))

    def forget(self) -> None:
        """A backward ran: earlier ``zero_grad`` calls came before it, as they should."""
        if self._zeros:
            self._zeros.clear()

    def _wrap_zero_grad(self, original: Any, kind: str) -> Any:
        recorder = self
        order = self._order

        @functools.wraps(original)
        def zero_grad(target: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(target, *args, **kwargs)
            if order.backward_pending and not _is_compiling():
                recorder._note_zero(target, kind, sys._getframe(1))
            return result

        return zero_grad

    def _note_zero(self, target: Any, kind: str, frame: FrameType) -> None:
        """zero_grad ran after a backward, before any optimizer step: remember where."""
        tracker = self._tracker
        if tracker is None or tracker.off or len(self._zeros) >= 8:
            return
        try:
            self._zeros.append((weakref.ref(target), kind, site_of(first_user_frame(frame))))
        except Exception as exc:
            tracker.fail("the loop probe (zero_grad)", exc)

    def _optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._at_step(optimizer)

    def _optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The step has used every gradient computed so far, including those its closure
        computed inside ``step()`` (LBFGS, Lightning's automatic optimization): a zero_grad
        after this point prepares the next step. A zero_grad that came after the closure's
        backward, inside this step, is judged now."""
        self._at_step(optimizer)

    def _at_step(self, optimizer: Any) -> None:
        tracker = self._tracker
        if tracker is None or tracker.off or _is_compiling():
            return
        try:
            if self._zeros and self._order.backward_pending:
                self._check_reset(tracker, optimizer)
            self._zeros.clear()
            self._order.step()
        except Exception as exc:
            tracker.fail("the loop probe (optimizer step)", exc)

    def _check_reset(self, tracker: ProbeHost, optimizer: Any) -> None:
        params = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    params.append(p)
                    if len(params) == 8:
                        break
            if len(params) == 8:
                break
        none = sum(1 for p in params if p.grad is None)
        for ref, kind, site in self._zeros:
            target = ref()
            if target is None:
                continue
            hit = target is optimizer or (bool(params) and none == len(params))
            if not hit and kind == "module" and params:
                hit = any(q is params[0] for q in target.parameters())
            if not hit:
                continue
            if self._thinning.allow("grad-reset", tracker.step):
                call = call_at(site, "zero_grad")
                step_loc = location_of(site_of(first_user_frame(sys._getframe(2))))
                evidence = GradReset(
                    via=f"{kind}.zero_grad",
                    variable=call.receiver if call else None,
                    optimizer=type(optimizer).__name__,
                    params_checked=len(params),
                    grads_none=none,
                    step_location=step_loc.to_dict() if step_loc else None,
                )
                tracker.emit(evidence.event(tracker.step, location_of(site)))
            return
