"""Evidence about how the training loop uses forward, backward, zero_grad and step.

One probe, ``LoopProbe``, feeds eight detectors (``memwatch.analysis.detectors``):
retain-graph-leak, graph-retained-in-inference, eval-mode-missing,
microbatch-graph-accumulation, grad-reset-before-step, cudnn-benchmark-dynamic-shapes,
unbatched-forward (host-memory-growth needs only ``StepRecord.rss_bytes``). It is one
probe rather than seven because every tracker hook call costs a Python call per probe,
and the loop facts overlap (a backward both ends a forward "segment" and orders
zero_grad).

Cost, in the common path of a healthy loop (one root forward, one backward, one step):
a few attribute reads per hook and nothing else. In particular:

* Whether a forward's graph was used by a backward is known exactly from a pre-hook on
  the output's ``grad_fn`` (it fires when backward reaches the output), but registering
  one costs a few µs, so the first forward after a backward in train mode (the training
  forward) is not hooked: a backward that follows is taken to have used it. Only
  further forwards before a backward, and forwards in eval mode, are hooked.
* Source lines are read (``callsite``) only when evidence is emitted; frames are never
  kept (they hold the user's tensors): we keep ``(code, lasti, line)``.
* Events are emitted at step ends, only for steps where something was seen, and thinned
  after the first 256 of a kind so a bug that repeats every step cannot flood the run.
* A criterion module (``nn.CrossEntropyLoss()``, any ``_Loss``) and a root module fed the
  previous one's output (``head(backbone(x))``, a custom loss ``nn.Module``) belong to
  the same pass: they are not counted as further model forwards.

Installed besides the tracker's hooks: a global optimizer step *pre*-hook and wrappers
around ``Optimizer.zero_grad`` / ``Module.zero_grad`` (one comparison per call when the
order is right), both removed when the watch stops (``tracker._handles``/``_patch``).

No hook raises into the user's program: the tracker switches a failing probe off, and
the patched ``zero_grad`` and the optimizer pre-hook catch their own errors.
"""

from __future__ import annotations

import functools
import sys
import time
import weakref
from collections.abc import Iterable
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from memwatch.collect.callsite import CallSite, call_site_at
from memwatch.collect.frames import display_path, first_user_frame
from memwatch.collect.probe import BackwardCall, Probe
from memwatch.records import Event, Location

if TYPE_CHECKING:
    from memwatch.collect.tracker import Tracker
    from memwatch.records import StepRecord

_is_compiling = torch.compiler.is_compiling
_grad_enabled = torch.is_grad_enabled
_Tensor = torch.Tensor
_STOCHASTIC = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)
_CONV = torch.nn.modules.conv._ConvNd
_LOSS = torch.nn.modules.loss._Loss

#: autograd nodes that only combine losses (sum, mean, scale): what lies below them are
#: separate losses, which could have had separate backward passes.
_COMBINING = frozenset(
    {
        "AddBackward0",
        "AddBackward1",
        "SubBackward0",
        "SubBackward1",
        "SumBackward0",
        "SumBackward1",
        "MeanBackward0",
        "MeanBackward1",
        "StackBackward0",
        "CatBackward0",
        "DivBackward0",
        "DivBackward1",
        "MulBackward0",
        "MulBackward1",
        "NegBackward0",
        "ViewBackward0",
        "UnsqueezeBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
    }
)

_MAX_PENDING = 256  # forwards remembered between two backwards (an eval pass can be long)
_MAX_SHAPES = 1024  # distinct conv input shapes remembered per module
_EMIT_FREELY = 256  # events of one kind emitted before thinning to one step in 16
_CARRY_STEPS = 64  # forward-boundary steps a graph may wait for the run's first backward

Site = tuple[CodeType, int, int]  # (code, lasti, line) of a user frame: no locals kept


def _site(frame: FrameType | None) -> Site | None:
    if frame is None:
        return None
    return (frame.f_code, frame.f_lasti, frame.f_lineno)


def _location(site: Site | None) -> Location | None:
    if site is None:
        return None
    code, _, line = site
    return Location(display_path(code.co_filename), line, code.co_name)


def _call(site: Site | None, method: str | None = None) -> CallSite | None:
    if site is None:
        return None
    return call_site_at(site[0], site[1], site[2], method)


def _graph_tensors(output: Any) -> list[Any]:
    """Up to four tensors of a forward's output that carry autograd history."""
    if isinstance(output, _Tensor):
        return [output] if output.grad_fn is not None else []
    if isinstance(output, dict):
        items: Iterable[Any] = list(output.values())[:8]
    elif isinstance(output, (tuple, list)):
        items = output[:8]
    else:
        return []
    return [t for t in items if isinstance(t, _Tensor) and t.grad_fn is not None][:4]


class _Forward:
    """One root forward that built a graph, until a backward uses it or the step ends."""

    __slots__ = (
        "bytes",
        "consumed",
        "hooked",
        "module",
        "saved_after",
        "site",
        "training",
        "unbatched",
    )

    def __init__(self, nbytes: int, saved_after: int, training: bool, unbatched: bool) -> None:
        self.bytes = nbytes
        self.saved_after = saved_after
        self.training = training
        self.unbatched = unbatched
        self.consumed = False
        self.hooked = False
        self.module: weakref.ref[Any] | None = None
        self.site: Site | None = None

    def mark(self, grad_outputs: Any) -> None:
        """grad_fn pre-hook: a backward reached this forward's output (changes nothing)."""
        self.consumed = True


class LoopProbe(Probe):
    """Watches forward/backward/zero_grad/step order and forward inputs (see module doc)."""

    name = "loop"

    def __init__(self) -> None:
        self._tracker: Tracker | None = None
        self._tick = 0
        self._last_backward = -1
        self._last_step = -1
        self._emitted: dict[str, int] = {}
        self._stochastic: weakref.WeakKeyDictionary[Any, tuple[tuple[str, Any], ...]] = (
            weakref.WeakKeyDictionary()
        )
        self._has_conv: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._shapes: weakref.WeakKeyDictionary[Any, set[tuple[int, ...]]] = (
            weakref.WeakKeyDictionary()
        )
        self._shape_site: Site | None = None
        self._zeros: list[tuple[weakref.ref[Any], str, Site | None]] = []
        self._cur_unbatched = False
        self._skip = False  # the current root forward is a loss module
        self._continues = False  # ... or takes the previous root forward's output
        self._last_out: weakref.ref[Any] | None = None
        self._pending: list[_Forward] = []
        self._fast = _Forward(0, 0, True, False)
        self._carried = 0
        self._reset_step()

    def _reset_step(self) -> None:
        self._dirty = False  # anything to emit at this step's end (besides pending forwards)
        self._unconsumed: list[_Forward] = []
        self._overflow = [0, 0]  # forwards past _MAX_PENDING: count, bytes
        self._retain: dict[tuple[CodeType | None, int], list[Any]] = {}
        self._micro: list[dict[str, Any]] = []
        self._nograd_train = 0
        self._nograd_site: Site | None = None
        self._nograd_modules: tuple[str, ...] = ()
        self._nograd_model = ""
        self._forwards = 0  # root forwards of models (loss modules not counted)
        self._ub_calls = 0
        self._ub_shared = 0
        self._ub_base: weakref.ref[Any] | None = None
        self._ub_site: Site | None = None
        self._ub_shape: tuple[int, ...] = ()
        self._ub_model = ""
        self._new_shapes: list[tuple[int, ...]] = []
        self._shape_model = ""
        self._shape_distinct = 0

    # -- start: the optimizer pre-hook and the zero_grad wrappers ---------------------------
    def on_start(self, tracker: Tracker) -> None:
        self._tracker = tracker
        tracker._handles.append(register_optimizer_step_pre_hook(self._optimizer_pre))
        tracker._handles.append(register_optimizer_step_post_hook(self._optimizer_post))
        for owner, kind in ((torch.optim.Optimizer, "optimizer"), (torch.nn.Module, "module")):
            tracker._patch(owner, "zero_grad", self._wrap_zero_grad(owner.zero_grad, kind))

    def _wrap_zero_grad(self, original: Any, kind: str) -> Any:
        probe = self

        @functools.wraps(original)
        def zero_grad(target: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(target, *args, **kwargs)
            if probe._last_backward > probe._last_step and not _is_compiling():
                probe._note_zero(target, kind, sys._getframe(1))
            return result

        return zero_grad

    def _note_zero(self, target: Any, kind: str, frame: FrameType) -> None:
        """zero_grad ran after a backward, before any optimizer step: remember where."""
        tracker = self._tracker
        if tracker is None or tracker.off or len(self._zeros) >= 8:
            return
        try:
            self._zeros.append((weakref.ref(target), kind, _site(first_user_frame(frame))))
        except Exception as exc:
            tracker.fail("the loop probe (zero_grad)", exc)

    def _optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        tracker = self._tracker
        if tracker is None or tracker.off or _is_compiling():
            return
        try:
            if self._zeros and self._last_backward > self._last_step:
                self._check_reset(tracker, optimizer)
            self._zeros.clear()
            self._tick += 1
            self._last_step = self._tick
        except Exception as exc:
            tracker.fail("the loop probe (optimizer step)", exc)

    def _optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The step has used every gradient computed so far, including those its closure
        computed inside ``step()`` (LBFGS, Lightning's automatic optimization): a zero_grad
        after this point prepares the next step. A zero_grad that came after the closure's
        backward, inside this step, is judged now."""
        tracker = self._tracker
        if tracker is None or tracker.off or _is_compiling():
            return
        try:
            if self._zeros and self._last_backward > self._last_step:
                self._check_reset(tracker, optimizer)
            self._zeros.clear()
            self._tick += 1
            self._last_step = self._tick
        except Exception as exc:
            tracker.fail("the loop probe (optimizer step)", exc)

    def _check_reset(self, tracker: Tracker, optimizer: Any) -> None:
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
            if self._allow("grad-reset", tracker.step):
                call = _call(site, "zero_grad")
                step_site = _site(first_user_frame(sys._getframe(2)))
                step_loc = _location(step_site)
                tracker.emit(
                    Event(
                        "grad-reset",
                        tracker.step,
                        time.time(),
                        {
                            "via": f"{kind}.zero_grad",
                            "variable": call.receiver if call else None,
                            "optimizer": type(optimizer).__name__,
                            "params_checked": len(params),
                            "grads_none": none,
                            "step_location": step_loc.to_dict() if step_loc else None,
                        },
                        _location(site),
                    )
                )
            return

    # -- forwards -------------------------------------------------------------------------
    def on_root_forward_pre(self, tracker: Tracker, module: Any, args: Any) -> None:
        self._cur_unbatched = False
        if isinstance(module, _LOSS):  # criterion(out, y): part of the pass, not a model call
            self._skip = True
            return
        self._skip = False
        first = args[0] if args else None
        last = self._last_out
        # head(backbone(x)), criterion modules that are not _Loss: one pass, not two forwards
        self._continues = last is not None and first is not None and first is last()
        if self._continues:
            return
        self._forwards += 1
        if isinstance(first, _Tensor):
            dim = first.dim()
            if dim == 1 or (dim >= 2 and first.size(0) == 1):
                self._cur_unbatched = True
                self._note_unbatched(module, first)
            if dim >= 3 and _cudnn_benchmark():
                self._note_shape(module, first)
        if not _grad_enabled():
            stochastic = self._stochastic_of(module)
            if stochastic:
                training = tuple(name for name, m in stochastic if m.training)
                if training:
                    self._dirty = True
                    self._nograd_train += 1
                    if self._nograd_site is None:
                        self._nograd_site = _site(first_user_frame(sys._getframe(1)))
                        self._nograd_modules = training
                        self._nograd_model = type(module).__name__

    def _stochastic_of(self, module: Any) -> tuple[tuple[str, Any], ...]:
        """Dropout/batch-norm submodules of a root module (cached: walked once)."""
        try:
            return self._stochastic[module]
        except KeyError:
            pass
        except TypeError:  # not weak-referenceable/hashable: walk every time (rare)
            return tuple(
                (f"{n} ({type(m).__name__})", m)
                for n, m in module.named_modules()
                if isinstance(m, _STOCHASTIC)
            )
        found = tuple(
            (f"{name} ({type(m).__name__})" if name else type(m).__name__, m)
            for name, m in module.named_modules()
            if isinstance(m, _STOCHASTIC)
        )
        self._stochastic[module] = found
        return found

    def _note_unbatched(self, module: Any, tensor: Any) -> None:
        self._dirty = True
        self._ub_calls += 1
        # Rows of one batch (xb[i], xb[i:i+1]) are views of one base tensor. Compared by a
        # weakref, not by address: a freed tensor's memory is reused by the next one.
        base = tensor._base
        if base is not None:
            previous = self._ub_base() if self._ub_base is not None else None
            if previous is base:
                self._ub_shared += 1
            self._ub_base = weakref.ref(base)
        if self._ub_site is None:
            self._ub_site = _site(first_user_frame(sys._getframe(2)))
            self._ub_shape = tuple(tensor.shape)
            self._ub_model = type(module).__name__

    def _note_shape(self, module: Any, tensor: Any) -> None:
        has_conv = self._has_conv.get(module)
        if has_conv is None:
            has_conv = any(isinstance(m, _CONV) for m in module.modules())
            self._has_conv[module] = has_conv
        if not has_conv:
            return
        shapes = self._shapes.get(module)
        if shapes is None:
            shapes = self._shapes[module] = set()
        shape = tuple(tensor.shape)
        if shape in shapes or len(shapes) >= _MAX_SHAPES:
            return
        shapes.add(shape)
        self._dirty = True
        self._new_shapes.append(shape)
        self._shape_model = type(module).__name__
        self._shape_distinct = max(self._shape_distinct, len(shapes))
        if self._shape_site is None:
            self._shape_site = _site(first_user_frame(sys._getframe(2)))

    def on_root_forward_post(
        self, tracker: Tracker, module: Any, output: Any, saved_delta: int
    ) -> None:
        if self._skip or saved_delta <= 0 or not _grad_enabled():
            return
        if isinstance(output, _Tensor):  # the common case, without building a list
            if output.is_leaf:  # no grad_fn (read without making its Python wrapper)
                return
            tensors = [output]
        else:
            tensors = _graph_tensors(output)
            if not tensors:
                return
        self._last_out = weakref.ref(tensors[0])
        pending = self._pending
        if self._continues and pending:
            pending[-1].bytes += saved_delta
            pending[-1].saved_after = tracker.saved.current
            return
        training = module.training
        if not pending and training and self._last_backward >= 0:
            # The training forward (first since a backward, train mode, in a run that has
            # backwards): the backward that follows is taken to use it. Nothing else is
            # recorded, which keeps the hot path to a few attribute reads.
            fast = self._fast  # reused: it never outlives the step (no hook holds it)
            fast.bytes = saved_delta
            fast.saved_after = tracker.saved.current
            fast.unbatched = self._cur_unbatched
            pending.append(fast)
            return
        if len(pending) >= _MAX_PENDING:
            self._dirty = True
            self._overflow[0] += 1
            self._overflow[1] += saved_delta
            return
        entry = _Forward(saved_delta, tracker.saved.current, bool(training), self._cur_unbatched)
        if pending or not training:
            seen: list[Any] = []
            try:
                for t in tensors:
                    fn = t.grad_fn
                    if fn is not None and not any(fn is s for s in seen):
                        seen.append(fn)
                        fn.register_prehook(entry.mark)
                entry.hooked = True
            except Exception:  # an exotic node: judge this forward like an unhooked one
                entry.consumed = entry.hooked = bool(seen)
        try:
            entry.module = weakref.ref(module)
        except TypeError:
            entry.module = None
        entry.site = _site(first_user_frame(sys._getframe(1)))
        pending.append(entry)

    # -- backward -------------------------------------------------------------------------
    def on_backward(self, tracker: Tracker, call: BackwardCall) -> None:
        self._tick += 1
        self._last_backward = self._tick
        if self._zeros:
            self._zeros.clear()
        if call.retain_graph:
            self._dirty = True
            site = _site(first_user_frame(call.frame))
            key = (site[0], site[2]) if site is not None else (None, 0)
            entry = self._retain.get(key)
            if entry is None:
                self._retain[key] = [1, call.saved_before, call.saved_after, site, call.is_grad]
            else:
                entry[0] += 1
                entry[1] = max(entry[1], call.saved_before)
                entry[2] = call.saved_after
        pending = self._pending
        if not pending:
            return
        if len(pending) == 1 and not pending[0].hooked:  # the usual training step
            pending.clear()
            return
        consumed = []
        for e in pending:
            if e.consumed or not e.hooked:
                consumed.append(e)
            elif len(self._unconsumed) < _MAX_PENDING:
                self._dirty = True
                self._unconsumed.append(e)
        if len(consumed) >= 3:
            self._check_microbatch(call, consumed)
        pending.clear()
        # Forwards past _MAX_PENDING were not hooked: judge them like the ones we saw.
        if self._overflow[0] and len(consumed) >= len(self._unconsumed):
            self._overflow = [0, 0]

    def _check_microbatch(self, call: BackwardCall, consumed: list[_Forward]) -> None:
        """Several forwards whose graphs one backward used: separate losses summed?"""
        n = len(consumed)
        if sum(1 for e in consumed if e.unbatched) * 2 > n:
            return  # single samples, one by one: unbatched-forward tells the better fix
        total = sum(e.bytes for e in consumed)
        if call.saved_before < 0.7 * total:
            return  # the graphs were not all alive at once
        branches = _separate_losses(call.tensors, limit=4 * n + 32)
        if branches < n:
            return  # one loss couples the forwards (contrastive, triplet): not separable
        site = _site(first_user_frame(call.frame))
        sizes = sorted(e.bytes for e in consumed)
        self._dirty = True
        self._micro.append(
            {
                "forwards": n,
                "branches": branches,
                "forward_bytes": sizes[n // 2],
                "graphs_bytes": total,
                "saved_before": call.saved_before,
                "site": site,
            }
        )

    # -- step end -------------------------------------------------------------------------
    def on_step_end(self, tracker: Tracker, record: StepRecord, frames: list[FrameType]) -> None:
        if not self._dirty and not self._pending:  # a healthy step: nothing to say
            self._forwards = 0
            return
        step = record.step
        if (
            self._pending
            and record.boundary == "forward"
            and self._last_backward < 0
            and self._carried < _CARRY_STEPS
        ):
            # No backward yet in the whole run, and the tracker cut a step at a forward:
            # micro-batch forwards before the first backward look just like this, so the
            # graphs wait a few steps for a backward before they count as inference.
            self._carried += 1
        elif self._pending:
            if len(self._unconsumed) < _MAX_PENDING:
                self._unconsumed.extend(self._pending[: _MAX_PENDING - len(self._unconsumed)])
            self._pending.clear()
        if self._retain:
            self._emit_retain(tracker, record)
        if self._unconsumed or self._overflow[0]:
            self._emit_unconsumed(tracker, record)
        if self._nograd_train:
            self._emit_eval_mode(
                tracker,
                record,
                "no_grad",
                self._nograd_train,
                self._nograd_site,
                self._nograd_modules,
                self._nograd_model,
            )
        if self._micro:
            self._emit_micro(tracker, step)
        if self._ub_calls >= 4 and self._allow("unbatched-forwards", step):
            call = _call(self._ub_site)
            tracker.emit(
                Event(
                    "unbatched-forwards",
                    step,
                    time.time(),
                    {
                        "calls": self._ub_calls,
                        "forwards": self._forwards,
                        "same_base": self._ub_shared,
                        "shape": list(self._ub_shape),
                        "model": self._ub_model,
                        "variable": call.callee if call else None,
                    },
                    _location(self._ub_site),
                )
            )
        if self._new_shapes and self._allow("conv-input-shapes", step):
            call = _call(self._shape_site)
            tracker.emit(
                Event(
                    "conv-input-shapes",
                    step,
                    time.time(),
                    {
                        "new": len(self._new_shapes),
                        "distinct": self._shape_distinct,
                        "examples": [list(s) for s in self._new_shapes[:3]],
                        "model": self._shape_model,
                        "benchmark": True,
                        "variable": call.callee if call else None,
                    },
                    _location(self._shape_site),
                )
            )
        self._reset_step()

    def _allow(self, kind: str, step: int) -> bool:
        count = self._emitted.get(kind, 0)
        if count >= _EMIT_FREELY and step % 16:
            return False
        self._emitted[kind] = count + 1
        return True

    def _emit_retain(self, tracker: Tracker, record: StepRecord) -> None:
        step = record.step
        if not self._allow("retain-graph-backward", step):
            return
        stale = record.saved_stale_bytes
        old = max(0, stale - tracker.saved.bytes_saved_in(step - 1))
        for calls, before, after, site, is_grad in self._retain.values():
            call = _call(site, "grad" if is_grad else "backward")
            variable = None
            if call is not None:
                variable = call.receiver if call.method == "backward" else call.first_arg
            tracker.emit(
                Event(
                    "retain-graph-backward",
                    step,
                    time.time(),
                    {
                        "calls": calls,
                        "saved_before": before,
                        "saved_after": after,
                        "stale_bytes": stale,
                        "old_bytes": old,
                        "saved_bytes": record.saved_bytes,
                        "function": "autograd.grad" if is_grad else "backward",
                        "variable": variable,
                    },
                    _location(site),
                )
            )

    def _emit_unconsumed(self, tracker: Tracker, record: StepRecord) -> None:
        entries = self._unconsumed
        count = len(entries) + self._overflow[0]
        nbytes = sum(e.bytes for e in entries) + self._overflow[1]
        peak = 0
        if entries:
            base = entries[0].saved_after - entries[0].bytes
            peak = max(e.saved_after for e in entries) - base
        # The first forward of a training step is recorded without its line or module (hot
        # path); the next ones of an evaluation pass have them.
        site = next((e.site for e in entries if e.site is not None), None)
        module = next((m for m in (e.module() for e in entries if e.module) if m is not None), None)
        model = type(module).__name__ if module is not None else None
        eval_count = sum(1 for e in entries if not e.training)
        train_count = count - eval_count
        step = record.step
        if module is not None and train_count > 0 and module.training:
            # forgot model.eval() as well? (forwards without backward in train mode)
            training = tuple(name for name, m in self._stochastic_of(module) if m.training)
            if training:
                self._emit_eval_mode(
                    tracker, record, "no_backward", train_count, site, training, model or ""
                )
        if not self._allow("forward-without-backward", step):
            return
        call = _call(site)
        tracker.emit(
            Event(
                "forward-without-backward",
                step,
                time.time(),
                {
                    "forwards": count,
                    "eval_mode_forwards": eval_count,
                    "bytes": nbytes,
                    "peak_alive_bytes": max(0, peak),
                    "saved_at_end": record.saved_bytes,
                    "stale_at_end": record.saved_stale_bytes,
                    "step_backwards": record.backward_calls,
                    "step_forwards": self._forwards,
                    "boundary": record.boundary,
                    "model": model,
                    "variable": (call.holder or call.callee) if call else None,
                    "callee": call.callee if call else None,
                },
                _location(site),
            )
        )

    def _emit_eval_mode(
        self,
        tracker: Tracker,
        record: StepRecord,
        how: str,
        forwards: int,
        site: Site | None,
        modules: tuple[str, ...],
        model: str,
    ) -> None:
        step = record.step
        if forwards <= 0 or not self._allow(f"eval-pass-train-mode/{how}", step):
            return
        call = _call(site)
        tracker.emit(
            Event(
                "eval-pass-train-mode",
                step,
                time.time(),
                {
                    "how": how,  # "no_grad": grad disabled; "no_backward": graph never used
                    "forwards": forwards,
                    "training_modules": list(modules[:6]),
                    "training_module_count": len(modules),
                    "step_forwards": self._forwards,
                    "step_backwards": record.backward_calls,
                    "model": model,
                    "variable": call.callee if call else None,
                },
                _location(site),
            )
        )

    def _emit_micro(self, tracker: Tracker, step: int) -> None:
        if not self._allow("microbatch-backward", step):
            return
        worst = max(self._micro, key=lambda m: m["saved_before"])
        site = worst.pop("site")
        call = _call(site, "backward")
        variable = None
        if call is not None:
            variable = call.receiver if call.method == "backward" else call.first_arg
        worst["backwards"] = len(self._micro)
        worst["variable"] = variable
        tracker.emit(Event("microbatch-backward", step, time.time(), worst, _location(site)))


def _cudnn_benchmark_from_module() -> bool:
    return bool(torch.backends.cudnn.benchmark)


#: ``torch.backends.cudnn.benchmark`` is a property costing ~1 µs; the C getter ~0.1 µs.
_cudnn_benchmark = getattr(torch._C, "_get_cudnn_benchmark", _cudnn_benchmark_from_module)


def _separate_losses(tensors: Any, limit: int) -> int:
    """How many separate losses a backward root sums (walks only the combining nodes)."""
    if isinstance(tensors, _Tensor):
        roots = [tensors]
    elif isinstance(tensors, (tuple, list)):
        roots = [t for t in tensors if isinstance(t, _Tensor)]
    else:
        return 0
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen: set[int] = set()
    keep: list[Any] = []  # hold the nodes while walking so that their ids stay unique
    losses = 0
    while stack and len(seen) < limit:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        keep.append(node)
        if node.name() not in _COMBINING:
            losses += 1
            continue
        for child, _ in node.next_functions:
            if child is not None and type(child).__name__ != "AccumulateGrad":
                stack.append(child)
    return losses
