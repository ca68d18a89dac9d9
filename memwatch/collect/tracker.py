"""The tracker: installs memwatch's torch hooks, finds step boundaries, builds StepRecords.

Hooks and their costs (probe.md):

* global module forward pre/post hooks (~1.3 µs per module call), used only to count
  *root* forwards and to hand them to probes; they return at once while torch.compile
  traces, so compiled models keep a single graph;
* the global optimizer step post-hook (0.1 µs) marks step ends;
* ``torch.autograd.backward``/``grad`` wrappers count backward passes and see
  ``retain_graph``;
* saved-tensor hooks count bytes saved for backward (see ``saved.py``);
* ``OutOfMemoryError.__init__`` observes OOMs (see ``oom.py``).

The tracker never raises into the user's program: a hook that fails switches its part
off with one notice (memwatch.notices) and the rest goes on.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import FrameType
from typing import Any, Protocol

import torch
import torch.nn.modules.module as torch_module
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from memwatch.collect import cuda
from memwatch.collect import oom as oom_observer
from memwatch.collect.device import CudaMemory, DeviceMemory, NoDeviceMemory, NvmlSampler
from memwatch.collect.frames import first_user_frame, frame_location, user_frames
from memwatch.collect.probe import HOOK_NAMES, BackwardCall, Probe
from memwatch.collect.quiet import hide_global_hook_warning
from memwatch.collect.rss import RssReader
from memwatch.collect.saved import (
    SavedTensorCounter,
    SavedTensorHooks,
    ThreadSafeSavedTensorCounter,
)
from memwatch.notices import notice
from memwatch.records import Event, Holder, MemoryCategories, StepRecord

_is_compiling = torch.compiler.is_compiling


class Sink(Protocol):
    """Where the tracker sends what it records (the session)."""

    def on_step(self, record: StepRecord) -> None: ...
    def on_event(self, event: Event) -> None: ...
    def on_holders(self, holders: list[Holder]) -> None: ...
    def on_categories(self, categories: MemoryCategories) -> None: ...


class Tracker:
    """Owns every hook of one watch; one tracker is active per process."""

    def __init__(
        self,
        sink: Sink,
        probes: list[Probe],
        device: DeviceMemory | None = None,
        watch_saved_tensors: bool = True,
    ) -> None:
        self.sink = sink
        self.probes = list(probes)
        self.device: DeviceMemory = device if device is not None else _default_device()
        # A CUDA build may run backward on autograd's device threads (decided without
        # initialising CUDA: the program may not have touched it yet).
        self.saved = ThreadSafeSavedTensorCounter() if cuda.built() else SavedTensorCounter()
        self._saved_hooks = SavedTensorHooks(self.saved) if watch_saved_tensors else None
        self.rss = RssReader()
        self.nvml = NvmlSampler()
        self._note_root_module = getattr(self.device, "note_root_module", None)
        self._cuda_device: int | None = None  # the device of the last step, once CUDA is used
        self.step = 0
        self.off = False  # everything off (after fork, or after stop)
        self._tid = threading.get_ident()
        self._depth = 0
        self._handles: list[Any] = []
        self._undo: list[Callable[[], None]] = []
        self._failed: set[str] = set()
        self.manual = False
        self._seen_optimizer = False
        self._ever_backward = False
        self._activity = False
        self._backward_since_boundary = False
        self._step_root: weakref.ref[Any] | None = None
        self._forward_calls = 0
        self._backward_calls = 0
        self._cuts: list[StepRecord] = []
        self._held_events: list[tuple[int, Event]] = []
        self._cut_start = (0.0, 0.0)
        self._forward_only_confirmed = False
        self._carried_device_peak: int | None = None
        self._oom_events = 0
        self._root_saved_before = 0
        # A probe that has just confirmed a problem sets this: the sink analyses at this
        # step end instead of waiting for its next periodic pass (detection latency).
        self.analysis_requested = False
        self._t0 = time.perf_counter()
        self._wall0 = time.time()
        self._hooks: dict[str, list[Callable[..., None]]] = {}
        self._rebuild_probe_hooks()

    # -- probes ---------------------------------------------------------------------------
    def _rebuild_probe_hooks(self) -> None:
        self._hooks = {
            name: [
                getattr(p, name)
                for p in self.probes
                if getattr(type(p), name) is not getattr(Probe, name)
            ]
            for name in HOOK_NAMES
        }

    def _call_probes(self, hook: str, *args: Any) -> None:
        for method in self._hooks[hook]:
            try:
                method(self, *args)
            except Exception as exc:
                probe = method.__self__  # type: ignore[attr-defined]
                self.fail(f"the {probe.name} probe", exc)
                if probe in self.probes:
                    self.probes.remove(probe)
                    self._rebuild_probe_hooks()

    def emit(self, event: Event) -> None:
        """Send an observation to the store and the detectors.

        While forward-only cuts are pending the step numbers are not settled yet, so the
        event waits with the index of its segment (see _forward_only_boundary).
        """
        if self._cuts:
            self._held_events.append((len(self._cuts), event))
            return
        self.sink.on_event(event)

    def emit_holders(self, holders: list[Holder]) -> None:
        self.sink.on_holders(holders)

    def emit_categories(self, categories: MemoryCategories) -> None:
        self.sink.on_categories(categories)

    def fail(self, part: str, exc: BaseException) -> None:
        """Report an internal error once per part; the caller switches that part off."""
        if part in self._failed:
            return
        self._failed.add(part)
        notice(
            f"{part} switched off after an internal error ({exc!r}); "
            "training continues and what was recorded is kept"
        )

    # -- install / remove -------------------------------------------------------------------
    def start(self) -> None:
        self._handles.append(torch_module.register_module_forward_pre_hook(self._forward_pre))
        self._handles.append(
            torch_module.register_module_forward_hook(self._forward_post, always_call=True)
        )
        self._handles.append(register_optimizer_step_pre_hook(self._optimizer_pre))
        self._handles.append(register_optimizer_step_post_hook(self._optimizer_post))
        self._patch_backward()
        self._patch_grad_scaler()
        if self._saved_hooks is not None:
            self._saved_hooks.push()
            self._patch_functorch_guard()
        oom_observer.install(self._on_oom)
        self._undo.append(oom_observer.uninstall)
        self._undo.append(hide_global_hook_warning())
        self._t0 = time.perf_counter()
        self._wall0 = time.time()
        self._call_probes("on_start")

    def stop(self) -> None:
        """Close the open step (if anything happened in it) and remove every hook."""
        if self.off:
            return
        try:
            if self._activity:
                self._end_step("end", sys._getframe(1))
            else:
                self._flush_forward_only_cuts()
            self._call_probes("on_stop")
        finally:
            self._remove_hooks()

    def _remove_hooks(self) -> None:
        self.off = True
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._saved_hooks is not None:
            if self._saved_hooks.on_top():
                self._saved_hooks.pop()
            else:  # someone pushed hooks above ours and left them: keep theirs working
                self._saved_hooks.enabled = False
        for undo in reversed(self._undo):
            try:
                undo()
            except Exception:
                pass
        self._undo.clear()
        self.rss.close()
        self.nvml.close()
        close_device = getattr(self.device, "close", None)
        if close_device is not None:
            try:
                close_device()
            except Exception:
                pass

    def after_fork_in_child(self) -> None:
        """A forked child (DataLoader worker) must not run hooks or count anything."""
        self.off = True
        if self._saved_hooks is not None:
            self._saved_hooks.enabled = False

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        original = getattr(owner, name)
        setattr(owner, name, replacement)
        self._undo.append(lambda: setattr(owner, name, original))

    def _patch_backward(self) -> None:
        autograd = torch.autograd
        original_backward = autograd.backward
        original_grad = autograd.grad
        tracker = self

        @functools.wraps(original_backward)
        def backward(*args: Any, **kwargs: Any) -> Any:
            if tracker.off or _is_compiling():
                return original_backward(*args, **kwargs)
            return tracker._run_backward(original_backward, False, args, kwargs)

        @functools.wraps(original_grad)
        def grad(*args: Any, **kwargs: Any) -> Any:
            if tracker.off or _is_compiling():
                return original_grad(*args, **kwargs)
            return tracker._run_backward(original_grad, True, args, kwargs)

        self._patch(autograd, "backward", backward)
        self._patch(autograd, "grad", grad)

    def _patch_grad_scaler(self) -> None:
        scaler_cls = getattr(getattr(torch, "amp", None), "GradScaler", None)
        if scaler_cls is None:
            return
        original_update = scaler_cls.update
        tracker = self

        @functools.wraps(original_update)
        def update(scaler: Any, *args: Any, **kwargs: Any) -> Any:
            result = original_update(scaler, *args, **kwargs)
            if not tracker.off:
                tracker._scaler_update()
            return result

        self._patch(scaler_cls, "update", update)

    def _patch_functorch_guard(self) -> None:
        """torch.func.grad/vjp refuse to run under saved-tensor hooks: step ours aside."""
        graph = torch.autograd.graph
        original = graph.disable_saved_tensors_hooks
        hooks = self._saved_hooks
        assert hooks is not None

        @contextlib.contextmanager
        def disable_saved_tensors_hooks(error_message: str) -> Iterator[None]:
            if hooks._pushed and hooks.on_top():
                hooks.pop()
                try:
                    with original(error_message):
                        yield
                finally:
                    hooks.push()
            else:
                with original(error_message):
                    yield

        self._patch(graph, "disable_saved_tensors_hooks", disable_saved_tensors_hooks)

    # -- hooks (hot path) ---------------------------------------------------------------------
    def _forward_pre(self, module: Any, args: Any) -> None:
        if _is_compiling() or self.off or threading.get_ident() != self._tid:
            return None
        self._depth += 1
        if self._depth == 1:
            try:
                self._root_forward_pre(module, args)
            except Exception as exc:
                self.fail("step detection", exc)
        return None

    def _forward_post(self, module: Any, args: Any, output: Any) -> None:
        if _is_compiling() or self.off or threading.get_ident() != self._tid:
            return None
        if output is None:
            # always_call hooks also run when the forward raised; an out-of-memory error
            # that is not torch.OutOfMemoryError (cuBLAS, cuDNN, MPS) is seen here.
            handling = sys.exc_info()[1]
            if handling is not None:
                oom_observer.observe_exception(handling)
        if self._depth == 1:
            try:
                if self._hooks["on_root_forward_post"]:
                    delta = self.saved.current - self._root_saved_before
                    self._call_probes("on_root_forward_post", module, output, delta)
            except Exception as exc:
                self.fail("forward hooks", exc)
        if self._depth > 0:
            self._depth -= 1
        return None

    def _root_forward_pre(self, module: Any, args: Any) -> None:
        if not self.manual and not self._seen_optimizer:
            # Loops without an optimizer: a step ends when the first root module of the
            # step runs again after a backward (manual SGD), or at all if no backward ever
            # ran (inference only: provisional until confirmed, see _forward_only_boundary).
            root = self._step_root() if self._step_root is not None else None
            if self._activity and root is module:
                if self._backward_since_boundary:
                    self._end_step("forward", sys._getframe(2))
                elif not self._ever_backward:
                    self._forward_only_boundary(sys._getframe(2))
        if self._note_root_module is not None:
            self._note_root_module(module)
        if self._step_root is None:
            try:
                self._step_root = weakref.ref(module)
            except TypeError:
                self._step_root = None
        self._activity = True
        self._forward_calls += 1
        self._root_saved_before = self.saved.current
        if self._hooks["on_root_forward_pre"]:
            self._call_probes("on_root_forward_pre", module, args)

    def _run_backward(
        self,
        original: Callable[..., Any],
        is_grad: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        # backward(tensors, grad_tensors, retain_graph, create_graph, ...);
        # grad(outputs, inputs, grad_outputs, retain_graph, create_graph, ...)
        pos = 3 if is_grad else 2
        retain = kwargs.get("retain_graph", args[pos] if len(args) > pos else None)
        create = bool(kwargs.get("create_graph", args[pos + 1] if len(args) > pos + 1 else False))
        saved_before = self.saved.current
        try:
            result = original(*args, **kwargs)
        except RuntimeError as exc:
            oom_observer.observe_exception(exc)  # OOMs that are not OutOfMemoryError
            raise
        try:
            if not self._ever_backward:
                self._merge_forward_only_cuts()
            self._backward_calls += 1
            self._activity = True
            self._ever_backward = True
            self._backward_since_boundary = True
            if self._hooks["on_backward"]:
                call = BackwardCall(
                    tensors=args[0] if args else kwargs.get("tensors", kwargs.get("outputs")),
                    retain_graph=bool(create if retain is None else retain),
                    create_graph=create,
                    frame=sys._getframe(2),
                    saved_before=saved_before,
                    saved_after=self.saved.current,
                    is_grad=is_grad,
                )
                self._call_probes("on_backward", call)
        except Exception as exc:
            self.fail("backward hooks", exc)
        return result

    def _optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.off or _is_compiling():
            return
        # Known before the first step ends, so LBFGS closures (forward/backward inside
        # step()) never trigger the no-optimizer fallback.
        self._seen_optimizer = True
        if self._cuts:
            self._merge_forward_only_cuts()

    def _optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.off or _is_compiling():
            return
        try:
            self._seen_optimizer = True
            # Several optimizers in one loop: only the first after some work ends the step.
            if not self.manual and self._activity:
                self._end_step("optimizer", sys._getframe(1))
        except Exception as exc:
            self.fail("step detection", exc)

    def _scaler_update(self) -> None:
        # GradScaler skipped optimizer.step() (inf/nan gradients): no optimizer hook fired.
        try:
            if not self.manual and self._activity and self._backward_since_boundary:
                self._end_step("scaler", sys._getframe(2))
        except Exception as exc:
            self.fail("step detection", exc)

    def _on_oom(self, info: dict[str, Any]) -> None:
        if self.off:
            return
        frame = info.get("frame")
        user = first_user_frame(frame) if frame is not None else None
        self._oom_events += 1
        try:
            # Probes see the raw "frame" and "exception" (never to be kept strongly) and may
            # add JSON-able evidence (bytes in use, holders) to the event before it is sent.
            self._call_probes("on_oom", info, user)
        finally:
            info.pop("frame", None)
            info.pop("exception", None)
        data = dict(info)
        data.setdefault("saved_bytes", self.saved.current)
        data.setdefault("rss_bytes", self.rss.read())
        current = getattr(self.device, "current_allocated", None)
        if current is not None:
            data.setdefault("allocated_bytes", current())
        self.emit(
            Event(
                "oom",
                self.step,
                time.time(),
                data,
                frame_location(user) if user is not None else None,
            )
        )

    # -- steps ------------------------------------------------------------------------------
    def mark_step(self, frame: FrameType | None) -> None:
        """``mw.step()``: the user marks step ends by hand from now on."""
        self.manual = True
        self._end_step("manual", frame)

    def _build_record(self, boundary: str) -> StepRecord:
        now = time.perf_counter()
        reading = self.device.read_and_reset_peak()
        if reading.device is not None and reading.device != self._cuda_device:
            self._cuda_device = reading.device
            self._describe_device(reading.device)
        peak = reading.peak_allocated_bytes
        if self._carried_device_peak is not None and peak is not None:
            peak = max(peak, self._carried_device_peak)
        self._carried_device_peak = None
        return StepRecord(
            step=self.step,
            started_at=self._wall0,
            duration_s=now - self._t0,
            boundary=boundary,
            allocated_bytes=reading.allocated_bytes,
            reserved_bytes=reading.reserved_bytes,
            peak_allocated_bytes=peak,
            device_used_bytes=self.nvml.read(reading.device),
            saved_bytes=self.saved.current,
            saved_peak_bytes=self.saved.peak,
            saved_stale_bytes=self.saved.stale_bytes,
            rss_bytes=self.rss.read(),
            forward_calls=self._forward_calls,
            backward_calls=self._backward_calls,
            oom_events=self._oom_events,
        )

    def _describe_device(self, device: int) -> None:
        """Tell the sink which CUDA device the run uses (first CUDA step, or a change)."""
        on_device = getattr(self.sink, "on_device", None)
        if on_device is None:
            return
        try:
            on_device(cuda.device_facts(device))
        except Exception as exc:
            self.fail("device description", exc)

    def _reset_step_counters(self) -> None:
        self._forward_calls = self._backward_calls = self._oom_events = 0
        self._activity = False
        self._backward_since_boundary = False
        self._t0 = time.perf_counter()
        self._wall0 = time.time()

    def _end_step(self, boundary: str, frame: FrameType | None) -> None:
        self._flush_forward_only_cuts()
        record = self._build_record(boundary)
        if self._hooks["on_step_end"]:
            frames = user_frames(frame, limit=4) if frame is not None else []
            self._call_probes("on_step_end", record, frames)
            del frames
        # After the probes: the evidence they emit at this step end is in the analysis
        # pass the sink may run now (a leak confirmed at step k is reported at once).
        self.sink.on_step(record)
        self.step += 1
        self.saved.new_step(self.step)
        self._reset_step_counters()

    # -- forward-only boundaries ------------------------------------------------------------
    # Before any backward or optimizer step, a repeated root forward may be the next step
    # of an inference loop, or the next micro-batch / sample / episode of the first training
    # step. The cut is kept aside: a backward merges the pending cuts back into one step; a
    # run of forwards without any backward confirms inference and emits them as steps.

    def _forward_only_boundary(self, frame: FrameType | None) -> None:
        if self._forward_only_confirmed:
            self._end_step("forward", frame)
            return
        if not self._cuts:
            self._cut_start = (self._t0, self._wall0)
        record = self._build_record("forward")
        self._cuts.append(record)
        self.saved.peak = self.saved.current
        self._reset_step_counters()
        self._activity = True
        if len(self._cuts) >= FORWARD_ONLY_CONFIRM:
            self._forward_only_confirmed = True
            self._flush_forward_only_cuts()

    def _flush_forward_only_cuts(self) -> None:
        """Emit pending forward-only cuts as steps of their own (inference confirmed)."""
        if not self._cuts:
            return
        cuts, self._cuts = self._cuts, []
        held, self._held_events = self._held_events, []
        base = self.step
        for index, record in enumerate(cuts):
            self.step = base + index  # probes ending this step read tracker.step
            record = replace(record, step=self.step)
            for segment, event in held:
                if segment == index:
                    self.sink.on_event(replace(event, step=base + index))
            if self._hooks["on_step_end"]:
                self._call_probes("on_step_end", record, [])
            self.sink.on_step(record)
        self.step = base + len(cuts)
        for segment, event in held:
            if segment == len(cuts):  # the segment still open: the current step
                self.sink.on_event(replace(event, step=self.step))
        self.saved.new_step(self.step)

    def _merge_forward_only_cuts(self) -> None:
        """A backward came: the pending cuts were micro-batches of the first training step."""
        if not self._cuts:
            return
        cuts, self._cuts = self._cuts, []
        held, self._held_events = self._held_events, []
        for _, event in held:
            self.sink.on_event(replace(event, step=self.step))
        self._t0, self._wall0 = self._cut_start
        self._forward_calls += sum(c.forward_calls for c in cuts)
        self._oom_events += sum(c.oom_events for c in cuts)
        self.saved.peak = max([self.saved.peak, *(c.saved_peak_bytes for c in cuts)])
        peaks = [c.peak_allocated_bytes for c in cuts if c.peak_allocated_bytes is not None]
        if peaks:
            self._carried_device_peak = max(peaks)


#: Forward-only boundaries needed (with no backward in between) to call a run inference.
FORWARD_ONLY_CONFIRM = 64


def _default_device() -> DeviceMemory:
    """The allocator reader on a CUDA build (it reads nothing until the program initialises
    CUDA), nothing on a CPU build."""
    if cuda.built() and cuda.can_read_allocator():
        try:
            return CudaMemory()
        except Exception:
            pass
    return NoDeviceMemory()
