"""Evidence for ``grad-reset-before-step`` and ``grad-never-reset``: where each
optimizer's gradients came from, what reset them, and which step used them.

Gradient provenance, not call order. Each optimizer is followed (weakly; at most
``MAX_OPTIMIZERS``) from its creation, its first ``zero_grad`` or its first step, through
a sample of up to ``SAMPLE`` of its parameters: for each, the gradient tensor (a weak
reference) and its version counter. Comparing the sample with the previous observation
says what happened in between, for a few attribute reads:

* after ``backward()`` (not ``torch.autograd.grad``/``torch.func``, which never write
  ``.grad``): a gradient that appeared, or whose version rose, means this backward pass
  wrote into the optimizer's parameters. The pass is credited to every such optimizer;
  it is *used* once any of them steps (so a GAN generator loss that also writes the
  discriminator's gradients is used by the generator's step). A version that rose by
  exactly one on the same tensor is a pass added on top of what was there;
* a ``zero_grad`` (``Optimizer``/``Module``, wrapped; the sample is compared before and
  after the call, so a module's ``zero_grad`` reaches exactly the optimizers whose
  parameters it holds) or gradients found ``None`` at the step (``p.grad = None`` by hand)
  is a reset; the passes it discards that no optimizer used are remembered;
* weights updated in place after a pass (SAM's ``first_step`` perturbing them, a
  hand-written update under ``no_grad``; the sampled parameters' version counters) mean
  the pass was used, even without an optimizer step;
* a gradient replaced by another tensor (``p.grad = ...`` by hand, ``create_graph``
  backward) or changed in place by more than one accumulation (``p.grad.zero_()``, a
  clip) between two observations cannot be told apart from a transform: it counts as a
  reset for ``grad-never-reset`` (silent) and discards nothing (silent).

At an optimizer's step (global pre-hook; wrappers that step an inner optimizer, like
accelerate's, are skipped: the inner step is the real one) a ``GradReset`` is recorded if
resets since its previous step discarded unused passes, and a ``GradCarriedOver`` if a
pass was added on top of gradients its previous step had used. Inside ``step(closure)``
(LBFGS, Lightning) the closure's passes are used by that step; a reset there discards
something only if no backward follows it before the step ends. ``GradScaler.step`` is
wrapped so a step the scaler skipped still counts as using the passes. Recording is a
*when to record* rule; the detectors decide. The wrappers and hooks catch their own
errors and are undone at stop (``ProbeHost.add_handle``/``patch``).
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
from memwatch.collect.loop.common import Site, Thinning, call_at, location_of, site_of
from memwatch.evidence import GradCarriedOver, GradReset

if TYPE_CHECKING:
    from memwatch.collect.probe import BackwardCall, ProbeHost

_is_compiling = torch.compiler.is_compiling
_Optimizer = torch.optim.Optimizer

SAMPLE = 2  # parameters per optimizer whose gradients are compared (first and last)
MAX_OPTIMIZERS = 16  # optimizers followed at once (dead ones are dropped)
MAX_PENDING = 256  # passes remembered per optimizer between two steps or resets
MAX_RESETS = 64  # discarding resets remembered per optimizer between two of its steps
GRADS_CHECKED = 8  # parameters read for ``grads_none`` when a GradReset is recorded

# What one comparison of the sample says (bit flags).
WROTE = 1  # a gradient appeared or changed
ADDED = 2  # the same gradient tensor, one version later: one accumulation on top
INPLACE = 4  # the same tensor, changed in place more than once (zero_, clip, unscale)
SWAPPED = 8  # another tensor than before (``p.grad = ...``, a create_graph backward)
NONE = 16  # a gradient there before is None now


class _Pass:
    """One backward pass that wrote gradients; shared by the optimizers it wrote into."""

    __slots__ = ("owners", "used")

    def __init__(self) -> None:
        self.used = False
        self.owners: frozenset[int] = frozenset()  # serials of the optimizers it wrote into


class _Reset:
    """A reset that discarded unused passes of one optimizer."""

    __slots__ = ("passes", "site", "variable", "via")

    def __init__(
        self, via: str, site: Site | None, variable: str | None, passes: list[_Pass]
    ) -> None:
        self.via = via
        self.site = site
        self.variable = variable
        self.passes = passes


class _Followed:
    """What is known about one optimizer's gradients (no strong reference to anything)."""

    __slots__ = (
        "carried",
        "carry",
        "discarded",
        "grads",
        "groups",
        "in_step_reset",
        "judged",
        "last_reset",
        "params",
        "passes_in_sum",
        "pending",
        "ref",
        "resets",
        "serial",
        "stacked",
        "stepping",
        "steps",
        "versions",
        "weights",
    )

    def __init__(self, optimizer: Any, serial: int) -> None:
        self.ref = weakref.ref(optimizer)
        self.serial = serial
        self.groups = -1
        self.params: tuple[weakref.ref[Any], ...] = ()
        self.grads: list[weakref.ref[Any] | None] = []  # per sampled parameter
        self.versions: list[int] = []
        self.pending: list[_Pass] = []  # passes since its last step or reset
        self.discarded: list[_Reset] = []  # since its last step
        self.in_step_reset: _Reset | None = None
        self.carry = False  # its gradients hold passes a step of it has used
        self.stacked = False  # a pass was added on top of those since its last step
        self.carried = 0  # consecutive steps on carried gradients
        self.passes_in_sum = 0  # passes summed in its gradients since the last reset
        self.resets = 0
        self.last_reset: tuple[str | None, Any] | None = None  # (call text, location dict)
        self.stepping = 0
        self.steps = 0
        self.judged = False  # the step in progress was judged at its pre-hook
        self.resample(optimizer)

    def resample(self, optimizer: Any) -> None:
        groups = optimizer.param_groups
        self.groups = len(groups)
        flat = [p for g in groups for p in g["params"] if getattr(p, "requires_grad", False)]
        n = len(flat)
        if n > SAMPLE:
            flat = [flat[round(i * (n - 1) / (SAMPLE - 1))] for i in range(SAMPLE)]
        self.params = tuple(weakref.ref(p) for p in flat)
        self.grads = [None] * len(flat)
        self.versions = [0] * len(flat)
        self.weights = self.weight_versions()
        self.observe()

    def observe(self) -> int:
        """What changed in the sample since the last look (flags); remember it now.

        A weak reference is made only for a gradient tensor not seen before, so the common
        case (the same tensors, accumulated or zeroed in place) is a few attribute reads.
        """
        flags = 0
        grads, versions = self.grads, self.versions
        for i, ref in enumerate(self.params):
            p = ref()
            g = None if p is None else p.grad
            old = grads[i]
            if g is None:
                if old is not None:
                    flags |= NONE
                    grads[i] = None
                continue
            version = g._version
            if old is not None and old() is g:
                if version != versions[i]:
                    flags |= WROTE | (ADDED if version == versions[i] + 1 else INPLACE)
            else:
                flags |= WROTE if old is None else WROTE | SWAPPED
                grads[i] = weakref.ref(g)
            versions[i] = version
        return flags

    def had_grads(self) -> bool:
        return any(ref is not None for ref in self.grads)

    def unused(self) -> list[_Pass]:
        return [p for p in self.pending if not p.used]

    def weight_versions(self) -> tuple[int, ...]:
        """The sampled parameters' own version counters (an in-place update moves them)."""
        return tuple(-1 if (p := ref()) is None else p._version for ref in self.params)

    def weights_moved(self) -> bool:
        """The weights were updated in place since the last pass was credited: the passes
        were used, by an update that is not an optimizer step (SAM's ``first_step``, a
        hand-written update under ``no_grad``)."""
        return bool(self.pending) and self.weight_versions() != self.weights

    def use_pending(self) -> None:
        for p in self.pending:
            p.used = True
        self.pending.clear()

    def reset(self) -> None:
        """Its gradients were reset: nothing carried, nothing summed."""
        self.pending.clear()
        self.carry = False
        self.stacked = False
        self.passes_in_sum = 0
        self.resets += 1


def is_wrapper(optimizer: Any) -> bool:
    """An optimizer that steps an inner one (accelerate's ``AcceleratedOptimizer``,
    ``torchcontrib``'s SWA ...): the inner optimizer's step is the one that counts."""
    return isinstance(getattr(optimizer, "optimizer", None), _Optimizer)


class GradResetRecorder:
    """Follows each optimizer's gradients between backward, reset and step (module doc)."""

    def __init__(self, thinning: Thinning) -> None:
        self._thinning = thinning
        self._tracker: ProbeHost | None = None
        self._followed: list[_Followed] = []
        self._index: dict[int, _Followed] = {}  # id(optimizer) -> followed (ref checked)
        self._serials = 0
        self._scaler_stepping: Any = None  # the optimizer GradScaler.step is stepping

    def install(self, tracker: ProbeHost) -> None:
        self._tracker = tracker
        tracker.add_handle(register_optimizer_step_pre_hook(self._optimizer_pre))
        tracker.add_handle(register_optimizer_step_post_hook(self._optimizer_post))
        for owner, kind in ((_Optimizer, "optimizer"), (torch.nn.Module, "module")):
            tracker.patch(owner, "zero_grad", self._wrap_zero_grad(owner.zero_grad, kind))
        tracker.patch(_Optimizer, "__init__", self._wrap_init(_Optimizer.__init__))
        scaler = getattr(getattr(torch, "amp", None), "GradScaler", None)
        if scaler is not None:
            tracker.patch(scaler, "step", self._wrap_scaler_step(scaler.step))

    # -- following optimizers -------------------------------------------------------------
    def _follow(self, optimizer: Any) -> _Followed | None:
        found = self._index.get(id(optimizer))
        if found is not None and found.ref() is optimizer:
            return found
        if is_wrapper(optimizer):
            return None
        self._followed = [f for f in self._followed if f.ref() is not None]
        self._index = {id(f.ref()): f for f in self._followed}
        if len(self._followed) >= MAX_OPTIMIZERS:
            return None
        self._serials += 1
        followed = _Followed(optimizer, self._serials)
        self._followed.append(followed)
        self._index[id(optimizer)] = followed
        return followed

    def _wrap_init(self, original: Any) -> Any:
        recorder = self

        @functools.wraps(original)
        def __init__(optimizer: Any, *args: Any, **kwargs: Any) -> None:
            original(optimizer, *args, **kwargs)
            tracker = recorder._tracker
            if tracker is None or tracker.off:
                return
            try:
                recorder._follow(optimizer)
            except Exception as exc:
                tracker.fail("the loop probe (optimizer creation)", exc)

        return __init__

    # -- backward -------------------------------------------------------------------------
    def after_backward(self, call: BackwardCall) -> None:
        """A backward finished: credit it to the optimizers whose gradients it wrote."""
        if call.is_grad or not self._followed:
            return
        new_pass: _Pass | None = None
        owners = []
        for f in self._followed:
            flags = f.observe()
            if flags & (NONE | INPLACE) or (flags & SWAPPED and not call.create_graph):
                f.reset()  # reset or replaced by hand since the last look
            if not flags & WROTE:
                continue
            if new_pass is None:
                new_pass = _Pass()
            f.weights = f.weight_versions()
            owners.append(f.serial)
            if f.stepping:
                f.in_step_reset = None  # a reset inside step(closure) prepared this pass
            if len(f.pending) < MAX_PENDING:
                f.pending.append(new_pass)
            f.passes_in_sum += 1
            if f.carry and flags & ADDED:
                f.stacked = True
        if new_pass is not None:
            new_pass.owners = frozenset(owners)

    # -- resets ---------------------------------------------------------------------------
    def _wrap_zero_grad(self, original: Any, kind: str) -> Any:
        recorder = self

        @functools.wraps(original)
        def zero_grad(target: Any, *args: Any, **kwargs: Any) -> Any:
            tracker = recorder._tracker
            if tracker is None or tracker.off or _is_compiling():
                return original(target, *args, **kwargs)
            try:
                for f in recorder._followed:
                    recorder._by_hand(f, f.observe())
            except Exception as exc:
                tracker.fail("the loop probe (zero_grad)", exc)
                return original(target, *args, **kwargs)
            result = original(target, *args, **kwargs)
            try:
                recorder._after_reset(target, kind, sys._getframe(1))
            except Exception as exc:
                tracker.fail("the loop probe (zero_grad)", exc)
            return result

        return zero_grad

    def _after_reset(self, target: Any, kind: str, frame: FrameType) -> None:
        site: Site | None = None
        located = False
        for f in self._followed:
            if not f.observe():  # this zero_grad did not reach its parameters' gradients
                continue
            if f.weights_moved():
                f.use_pending()
            unused = f.unused()
            if unused or f.carried:
                if not located:
                    site, located = site_of(first_user_frame(frame)), True
                call = call_at(site, "zero_grad")
                variable = call.receiver if call else None
                if unused:
                    reset = _Reset(f"{kind}.zero_grad", site, variable, unused)
                    if f.stepping:
                        f.in_step_reset = reset
                    elif len(f.discarded) < MAX_RESETS:  # no step may ever come
                        f.discarded.append(reset)
                if f.carried:
                    where = location_of(site)
                    text = f"{variable}.zero_grad()" if variable else f"{kind}.zero_grad()"
                    f.last_reset = (text, where.to_dict() if where else None)
            f.reset()
        if kind == "optimizer" and not is_wrapper(target):
            self._follow(target)

    def _by_hand(self, f: _Followed, flags: int) -> None:
        """Changes seen before a step or a ``zero_grad``, since the last backward: made by
        hand (in place ones are clips and unscales: ignored)."""
        if flags & NONE:  # p.grad = None
            if f.weights_moved():
                f.use_pending()
            unused = f.unused()
            if unused and len(f.discarded) < MAX_RESETS:
                f.discarded.append(_Reset("p.grad = None", None, None, unused))
            f.reset()
        elif flags & SWAPPED:  # p.grad = <another tensor>
            f.carry = f.stacked = False

    # -- steps ----------------------------------------------------------------------------
    def _wrap_scaler_step(self, original: Any) -> Any:
        recorder = self

        @functools.wraps(original)
        def step(scaler: Any, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
            outer, recorder._scaler_stepping = recorder._scaler_stepping, optimizer
            try:
                result = original(scaler, optimizer, *args, **kwargs)
            finally:
                recorder._scaler_stepping = outer
            try:
                f = recorder._index.get(id(optimizer))
                if f is not None and f.ref() is optimizer and not f.stepping:
                    f.use_pending()  # a step the scaler skipped still consumed the passes
            except Exception as exc:
                if recorder._tracker is not None:
                    recorder._tracker.fail("the loop probe (GradScaler.step)", exc)
            return result

        return step

    def _optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        tracker = self._tracker
        if tracker is None or tracker.off or _is_compiling():
            return
        try:
            f = self._follow(optimizer)
            if f is None:
                return
            f.stepping += 1
            if f.stepping > 1:
                return
            if len(optimizer.param_groups) != f.groups:
                f.resample(optimizer)
            self._by_hand(f, f.observe())
            if f.discarded:
                self._judge_discards(tracker, f, optimizer)
            f.judged = bool(f.pending)
            self._judge_carried(tracker, f, optimizer)
            f.discarded = []
            f.stacked = False
            f.use_pending()
        except Exception as exc:
            tracker.fail("the loop probe (optimizer step)", exc)

    def _optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The step has used every gradient computed so far, those its closure computed
        inside ``step()`` included; a reset after the closure's last backward, inside this
        step, discarded what the step needed."""
        tracker = self._tracker
        if tracker is None or tracker.off or _is_compiling():
            return
        try:
            f = self._index.get(id(optimizer))
            if f is None or f.ref() is not optimizer or f.stepping == 0:
                return
            f.stepping -= 1
            if f.stepping:
                return
            reset = f.in_step_reset
            if reset is not None:
                f.in_step_reset = None
                lost = [p for p in reset.passes if not p.used]
                if lost:
                    self._record_reset(tracker, f, optimizer, [(reset, lost)], [], inside=True)
            if not f.judged:  # the passes came from the closure, inside the step
                self._judge_carried(tracker, f, optimizer)
            f.use_pending()
            f.stacked = False
            f.observe()
            f.carry = f.had_grads()
            f.steps += 1
        except Exception as exc:
            tracker.fail("the loop probe (optimizer step)", exc)

    # -- recording ------------------------------------------------------------------------
    def _judge_carried(self, tracker: ProbeHost, f: _Followed, optimizer: Any) -> None:
        """The step uses passes added on top of gradients an earlier step used (stacked),
        or fresh ones (the run of carried steps ends)."""
        if f.stacked:
            f.carried += 1
            self._record_carried(tracker, f, optimizer)
        elif f.pending:
            f.carried = 0

    def _judge_discards(self, tracker: ProbeHost, f: _Followed, optimizer: Any) -> None:
        """At ``optimizer``'s step: which discarded passes did no optimizer use?

        A pass is lost when no optimizer has stepped it by now, and it is of the kind this
        step uses: no pass reaches the step at all, or a kept pass wrote into the same
        optimizers (micro-batches of one loss). A pass that also wrote into another
        optimizer and is reset here while this step uses passes of another kind is that
        optimizer's (a GAN generator loss reaching the discriminator, reset by its
        ``zero_grad`` before the discriminator's own loss): not lost.
        """
        kept = f.unused()
        kinds = {p.owners for p in kept}
        found = []
        for reset in f.discarded:
            lost = [p for p in reset.passes if not p.used and (not kept or p.owners in kinds)]
            if lost:
                found.append((reset, lost))
        if found:
            self._record_reset(tracker, f, optimizer, found, kept, inside=False)

    def _record_reset(
        self,
        tracker: ProbeHost,
        f: _Followed,
        optimizer: Any,
        resets: list[tuple[_Reset, list[_Pass]]],
        kept: list[_Pass],
        inside: bool,
    ) -> None:
        if not self._thinning.allow("grad-reset", tracker.step):
            return
        first = resets[0][0]
        params = _params(optimizer, GRADS_CHECKED)
        step_loc = location_of(site_of(first_user_frame(sys._getframe(2))))
        evidence = GradReset(
            via=first.via,
            variable=first.variable,
            optimizer=type(optimizer).__name__,
            params_checked=len(params),
            grads_none=sum(1 for p in params if p.grad is None),
            step_location=step_loc.to_dict() if step_loc else None,
            passes_discarded=sum(len(lost) for _, lost in resets),
            passes_kept=len(kept),
            resets=len(resets),
            grad_bytes=_grad_bytes(optimizer),
            optimizer_serial=f.serial,
            inside_step=inside,
        )
        location = location_of(first.site) if first.site else step_loc
        tracker.emit(evidence.event(tracker.step, location))

    def _record_carried(self, tracker: ProbeHost, f: _Followed, optimizer: Any) -> None:
        if not self._thinning.allow("grad-carried-over", tracker.step):
            return
        site = site_of(first_user_frame(sys._getframe(2)))
        call = call_at(site, "step")
        variable = call.receiver if call else None
        if call is not None and self._scaler_stepping is optimizer:
            variable = call.first_arg  # scaler.step(optimizer)
        reset_call, reset_location = f.last_reset or (None, None)
        evidence = GradCarriedOver(
            optimizer=type(optimizer).__name__,
            optimizer_serial=f.serial,
            variable=variable,
            carried_steps=f.carried,
            passes_in_sum=f.passes_in_sum,
            steps=f.steps + 1,
            resets=f.resets,
            reset_call=reset_call,
            reset_location=reset_location,
            grad_bytes=_grad_bytes(optimizer),
        )
        tracker.emit(evidence.event(tracker.step, location_of(site)))


def _params(optimizer: Any, limit: int) -> list[Any]:
    out: list[Any] = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad:
                out.append(p)
                if len(out) == limit:
                    return out
    return out


def _grad_bytes(optimizer: Any) -> int:
    """Bytes of the gradients of the optimizer's parameters (its parameters' sizes)."""
    seen: set[int] = set()
    total = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += p.numel() * p.element_size()
    return total
