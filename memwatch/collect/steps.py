"""Step boundaries: when a training step ends, and the StepRecord that describes it.

A step ends at the first ``optimizer.step()`` after some work (several optimizers in one
loop end it once), at ``GradScaler.update()`` when the scaler skipped the optimizer step
(inf/nan gradients), at ``mw.step()`` once the user marks steps by hand, and at the stop
of the watch. Loops without an optimizer end a step when the first root module of the
step runs again after a backward (manual SGD). Before any backward, a repeated root
forward is a *provisional* (forward-only) boundary: it may be the next step of an
inference loop or the next micro-batch of the first training step, so it waits until a
backward merges it back or enough of them confirm inference.

``StepBoundaries`` holds this state machine and nothing else; the tracker
(``tracker.py``) feeds it what the hooks (``hooks.py``) see and offers it ``StepHost``.
"""

from __future__ import annotations

import sys
import time
import weakref
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import torch

from memwatch.records import MEASURED_SAVED, Event, StepRecord

if TYPE_CHECKING:
    from memwatch.collect.device import DeviceMemory, NvmlSampler
    from memwatch.collect.rss import RssReader
    from memwatch.collect.saved import SavedTensorCounter

_is_compiling = torch.compiler.is_compiling

#: Forward-only boundaries needed (with no backward in between) to call a run inference.
FORWARD_ONLY_CONFIRM = 64


class StepHost(Protocol):
    """What the step machine needs from the tracker: readings in, finished steps out."""

    step: int  # the step being recorded (probes read it too)
    off: bool  # the watch stopped, or a forked child: the hooks do nothing
    saved: SavedTensorCounter
    device: DeviceMemory
    rss: RssReader
    nvml: NvmlSampler

    def fail(self, part: str, exc: BaseException) -> None:
        """Report an internal error once; the caller switches ``part`` off."""

    def step_ended(self, record: StepRecord, frame: FrameType | None) -> None:
        """A step is settled: the probes' ``on_step_end``, then the sink."""

    def send_event(self, event: Event) -> None:
        """Hand an event held during forward-only cuts to the sink (step now settled)."""

    def describe_device(self, device: int) -> None:
        """The run's CUDA device is known or changed."""

    def measured_flags(self) -> int:
        """What was measured on the step ending now (``StepRecord.measured`` bits)."""
        return MEASURED_SAVED

    def step_settled(self, record: StepRecord) -> None:
        """A step ended and the next began: decide what the next one measures."""

    def note_optimizer(self, optimizer: Any) -> None:
        """An optimizer is about to step (a new one may mean a new model)."""

    def closure_step_done(self) -> None:
        """An ``optimizer.step(closure)`` returned (before any step end it makes)."""


class StepBoundaries:
    """Decides where steps end and builds one ``StepRecord`` per step."""

    def __init__(self, host: StepHost) -> None:
        self._host = host
        self.manual = False  # the user marks step ends with mw.step()
        self._cuda_device: int | None = None  # the device of the last step, once CUDA is used
        self._seen_optimizer = False
        self._ever_backward = False
        self._activity = False
        self._backward_since_boundary = False
        self._step_root: weakref.ref[Any] | None = None
        self._forward_calls = 0
        self._backward_calls = 0
        self.oom_events = 0
        self._cuts: list[StepRecord] = []
        self._held_events: list[tuple[int, Event]] = []
        self._cut_start = (0.0, 0.0)
        self._forward_only_confirmed = False
        self._carried_device_peak: int | None = None
        #: an ``optimizer.step(closure)`` is running (LBFGS, SAM, Lightning): its closure
        #: may run forward and backward many times (``in_closure_step``)
        self._closure_step = False
        self._t0 = time.perf_counter()
        self._wall0 = time.time()

    @property
    def forward_calls(self) -> int:
        """Root forwards seen in the step so far."""
        return self._forward_calls

    def start_clock(self) -> None:
        """The watch starts now: the first step's time counts from here."""
        self._t0 = time.perf_counter()
        self._wall0 = time.time()

    # -- what the hooks report ---------------------------------------------------------------
    def root_forward(self, module: Any) -> None:
        """A root module starts its forward (called from the forward pre-hook)."""
        if not self.manual and not self._seen_optimizer:
            # Loops without an optimizer: a step ends when the first root module of the
            # step runs again after a backward (manual SGD), or at all if no backward ever
            # ran (inference only: provisional until confirmed, see _forward_only_boundary).
            root = self._step_root() if self._step_root is not None else None
            if self._activity and root is module:
                # frame 1 is the tracker's forward pre-hook, 2 the module call
                if self._backward_since_boundary:
                    self._end_step("forward", sys._getframe(2))
                elif not self._ever_backward:
                    self._forward_only_boundary(sys._getframe(2))
        if self._step_root is None:
            try:
                self._step_root = weakref.ref(module)
            except TypeError:
                self._step_root = None
        self._activity = True
        self._forward_calls += 1

    def quiet_root_forward(self) -> bool:
        """``root_forward`` where no step can end at a forward (an optimizer or
        ``mw.step()`` marks the ends): count it and return True; False when
        ``root_forward`` has to decide (called for every forward the probes skip)."""
        if (self._seen_optimizer or self.manual) and self._step_root is not None:
            self._activity = True
            self._forward_calls += 1
            return True
        return False

    @property
    def ever_backward(self) -> bool:
        """Whether the run has had a backward yet."""
        return self._ever_backward

    def backward_done(self) -> None:
        """A backward (or ``autograd.grad``) call returned."""
        if not self._ever_backward:
            self._merge_forward_only_cuts()
        self._backward_calls += 1
        self._activity = True
        self._ever_backward = True
        self._backward_since_boundary = True

    def optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The global optimizer step pre-hook."""
        if self._host.off or _is_compiling():
            return
        # Known before the first step ends, so LBFGS closures (forward/backward inside
        # step()) never trigger the no-optimizer fallback.
        self._seen_optimizer = True
        # ``args`` begins with the optimizer itself (torch's ``profile_hook_step``)
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        self._closure_step = callable(closure)
        self._host.note_optimizer(optimizer)
        if self._cuts:
            self._merge_forward_only_cuts()

    @property
    def in_closure_step(self) -> bool:
        """Whether an ``optimizer.step(closure)`` is running: LBFGS calls its closure (a
        whole forward and backward) up to 20 times a step, SAM twice."""
        return self._closure_step

    def optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """The global optimizer step post-hook: the usual step end."""
        if self._host.off or _is_compiling():
            return
        if self._closure_step:
            self._closure_step = False
            self._host.closure_step_done()
        try:
            self._seen_optimizer = True
            # Several optimizers in one loop: only the first after some work ends the step.
            if not self.manual and self._activity:
                self._end_step("optimizer", sys._getframe(1))
        except Exception as exc:
            self._host.fail("step detection", exc)

    def scaler_update(self) -> None:
        """``GradScaler.update()`` returned (called from its patch, frame 2 is the user's)."""
        # GradScaler skipped optimizer.step() (inf/nan gradients): no optimizer hook fired.
        try:
            if not self.manual and self._activity and self._backward_since_boundary:
                self._end_step("scaler", sys._getframe(2))
        except Exception as exc:
            self._host.fail("step detection", exc)

    def mark_step(self, frame: FrameType | None) -> None:
        """``mw.step()``: the user marks step ends by hand from now on."""
        self.manual = True
        self._end_step("manual", frame)

    def finish(self, frame: FrameType | None) -> None:
        """The watch stops: close the open step if anything happened in it."""
        if self._activity:
            self._end_step("end", frame)
        else:
            self._flush_forward_only_cuts()

    def hold(self, event: Event) -> bool:
        """Keep ``event`` while forward-only cuts are pending (its step is not settled yet:
        see _forward_only_boundary); False when it can go to the sink now."""
        if self._cuts:
            self._held_events.append((len(self._cuts), event))
            return True
        return False

    # -- steps ------------------------------------------------------------------------------
    def _build_record(self, boundary: str) -> StepRecord:
        host = self._host
        now = time.perf_counter()
        reading = host.device.read_and_reset_peak()
        if reading.device is not None and reading.device != self._cuda_device:
            self._cuda_device = reading.device
            host.describe_device(reading.device)
        peak = reading.peak_allocated_bytes
        if self._carried_device_peak is not None and peak is not None:
            peak = max(peak, self._carried_device_peak)
        self._carried_device_peak = None
        measured = host.measured_flags()
        saved = host.saved
        counted = bool(measured & MEASURED_SAVED)  # else: not counted (sampling), None
        return StepRecord(
            step=host.step,
            started_at=self._wall0,
            duration_s=now - self._t0,
            boundary=boundary,
            allocated_bytes=reading.allocated_bytes,
            reserved_bytes=reading.reserved_bytes,
            peak_allocated_bytes=peak,
            device_used_bytes=host.nvml.read(reading.device),
            saved_bytes=saved.current if counted else None,
            saved_peak_bytes=saved.peak if counted else None,
            saved_stale_bytes=saved.stale_bytes if counted else None,
            rss_bytes=host.rss.read(),
            forward_calls=self._forward_calls,
            backward_calls=self._backward_calls,
            oom_events=self.oom_events,
            measured=measured,
        )

    def _reset_step_counters(self) -> None:
        self._forward_calls = self._backward_calls = self.oom_events = 0
        self._activity = False
        self._backward_since_boundary = False
        self._closure_step = False  # a step(closure) that raised never ran its post-hook
        self._t0 = time.perf_counter()
        self._wall0 = time.time()

    def _end_step(self, boundary: str, frame: FrameType | None) -> None:
        host = self._host
        self._flush_forward_only_cuts()
        record = self._build_record(boundary)
        # The probes first: the evidence they emit at this step end is in the analysis
        # pass the sink may run now (a leak confirmed at step k is reported at once).
        host.step_ended(record, frame)
        host.step += 1
        host.saved.new_step(host.step)
        self._reset_step_counters()
        host.step_settled(record)

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
        saved = self._host.saved
        saved.peak = saved.current
        self._reset_step_counters()
        self._activity = True
        if len(self._cuts) >= FORWARD_ONLY_CONFIRM:
            self._forward_only_confirmed = True
            self._flush_forward_only_cuts()

    def _flush_forward_only_cuts(self) -> None:
        """Emit pending forward-only cuts as steps of their own (inference confirmed)."""
        if not self._cuts:
            return
        host = self._host
        cuts, self._cuts = self._cuts, []
        held, self._held_events = self._held_events, []
        base = host.step
        for index, record in enumerate(cuts):
            host.step = base + index  # probes ending this step read tracker.step
            record = replace(record, step=host.step)
            for segment, event in held:
                if segment == index:
                    host.send_event(replace(event, step=base + index))
            host.step_ended(record, None)
        host.step = base + len(cuts)
        for segment, event in held:
            if segment == len(cuts):  # the segment still open: the current step
                host.send_event(replace(event, step=host.step))
        host.saved.new_step(host.step)

    def _merge_forward_only_cuts(self) -> None:
        """A backward came: the pending cuts were micro-batches of the first training step."""
        if not self._cuts:
            return
        host = self._host
        cuts, self._cuts = self._cuts, []
        held, self._held_events = self._held_events, []
        for _, event in held:
            host.send_event(replace(event, step=host.step))
        self._t0, self._wall0 = self._cut_start
        self._forward_calls += sum(c.forward_calls for c in cuts)
        self.oom_events += sum(c.oom_events for c in cuts)
        saved = host.saved
        saved.peak = max([saved.peak, *(c.saved_peak_bytes or 0 for c in cuts)])
        peaks = [c.peak_allocated_bytes for c in cuts if c.peak_allocated_bytes is not None]
        if peaks:
            self._carried_device_peak = max(peaks)
