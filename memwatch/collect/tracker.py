"""The tracker: one watch's collection, wiring hooks, step boundaries and probes.

It owns the readers (saved-tensor counter, device, RSS, NVML), the probes and the sink
(the session), and implements ``ProbeHost`` (``probe.py``), the one seam probes talk to.
The concerns around it each live in one module:

* ``hooks.py`` installs the global torch hooks and patches (module forward, optimizer
  step, backward/grad, ``GradScaler.update``, saved tensors, OOM) and removes them;
* ``steps.py`` decides where a step ends (including provisional forward-only
  boundaries) and builds the ``StepRecord``;
* here, the hooks' callbacks (hot path: module forwards, backward calls, OOMs) hand what
  they see to the step machine and to the probes.

The tracker never raises into the user's program: a hook that fails switches its part
off with one notice (memwatch.notices) and the rest goes on.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

import torch

from memwatch.collect import cuda
from memwatch.collect import oom as oom_observer
from memwatch.collect.device import CudaMemory, DeviceMemory, NoDeviceMemory, NvmlSampler
from memwatch.collect.frames import first_user_frame, frame_location, user_frames
from memwatch.collect.hooks import GlobalHooks, ModuleHooks
from memwatch.collect.probe import HOOK_NAMES, BackwardCall, Probe, ProbeHost
from memwatch.collect.rss import RssReader
from memwatch.collect.sampling import ROUTINE_EVIDENCE, SavedSampling
from memwatch.collect.saved import (
    SavedTensorCounter,
    SavedTensorHooks,
    ThreadSafeSavedTensorCounter,
)
from memwatch.collect.steps import FORWARD_ONLY_CONFIRM, StepBoundaries, StepHost
from memwatch.notices import notice
from memwatch.records import (
    MEASURED_ALL_MODULES,
    MEASURED_SAVED,
    Event,
    Holder,
    MemoryCategories,
    StepRecord,
)

__all__ = ["FORWARD_ONLY_CONFIRM", "Sink", "Tracker"]

_is_compiling = torch.compiler.is_compiling
#: Root forwards of one kind per uncounted step the probes see in full, and the stride of
#: those they see beyond (``Tracker._thin``).
FORWARD_FULL = 8
FORWARD_THIN_EVERY = 16
_grad_enabled = torch.is_grad_enabled
_get_ident = threading.get_ident


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
        sample: bool = True,
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
        self.step = 0
        self.off = False  # everything off (after fork, or after stop)
        self._tid = threading.get_ident()
        self._depth = 0
        # Root forwards the probes see (``_thin``): per kind this step; the one running
        # is skipped; how many forwards the one handed over stands for.
        self._forward_kinds: dict[tuple[int, bool, bool], int] = {}
        self._thinned = False
        self.forward_weight = 1
        self._installed = GlobalHooks()
        self._failed: set[str] = set()
        # saved bytes when the root forward running began; None: not counted (sampling)
        self._root_saved_before: int | None = None
        # A probe that has just confirmed a problem sets this: the sink analyses at this
        # step end instead of waiting for its next periodic pass (detection latency).
        self._analysis_requested = False
        # Which steps count saved tensors (sampling.py); ``sample=False``: every step.
        self.sampling = SavedSampling(enabled=sample)
        self._step_counted = False  # this step's saved tensors are counted from its start
        # Counting paused for the rest of an ``optimizer.step(closure)`` (its first pass
        # counted: ``_count_first_pass_only``); resumed when that call returns.
        self._closure_paused = False
        # The process CPU time of each step, for the sampling's cost estimate: wall time on
        # a busy machine also counts the wait for a core, which counting does not add to.
        self._cpu_mark = time.process_time()
        # Root forwards: global module hooks while discovering roots, then only the known
        # roots' (hooks.ModuleHooks); whether this whole step had the global ones.
        self._modules = ModuleHooks(self)
        self._step_all_modules = True
        self._optimizers: weakref.WeakSet[Any] = weakref.WeakSet()
        host: StepHost = self  # the step machine sees the tracker only through this seam
        self._steps = StepBoundaries(host)
        self._hooks: dict[str, list[Callable[..., None]]] = {}
        self._rebuild_probe_hooks()

    @property
    def manual(self) -> bool:
        """True once the user marks step ends with ``mw.step()``."""
        return self._steps.manual

    @manual.setter
    def manual(self, value: bool) -> None:
        self._steps.manual = value

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
        # Step ends whose saved tensors were not counted skip the probes that need them.
        self._hooks["on_step_end:unmeasured"] = [
            m
            for m in self._hooks["on_step_end"]
            if m.__self__.step_ends == "every"  # type: ignore[attr-defined]
        ]

    def _call_probes(self, hook: str, *args: Any) -> None:
        host: ProbeHost = self  # probes see the tracker only through this seam
        for method in self._hooks[hook]:
            try:
                method(host, *args)
            except Exception as exc:
                probe = method.__self__  # type: ignore[attr-defined]
                self.fail(f"the {probe.name} probe", exc)
                if probe in self.probes:
                    self.probes.remove(probe)
                    self._rebuild_probe_hooks()

    # -- what probes may ask (memwatch.collect.probe.ProbeHost) ------------------------------
    @property
    def analysis_requested(self) -> bool:
        return self._analysis_requested

    @analysis_requested.setter
    def analysis_requested(self, value: bool) -> None:
        self._analysis_requested = value
        if value:
            self.escalate("a probe confirmed a problem")

    @property
    def escalated(self) -> bool:
        return self.sampling.escalated

    def emit(self, event: Event) -> None:
        """Send an observation to the store and the detectors.

        While forward-only cuts are pending the step numbers are not settled yet, so the
        step machine holds the event with the index of its segment (see ``steps.py``).
        Evidence is a signal for the sampling (``sampling.py``), unless it is routine.
        """
        if event.kind not in ROUTINE_EVIDENCE:
            self.escalate(f"evidence {event.kind}")
        if not self._steps.hold(event):
            self.sink.on_event(event)

    def escalate(self, reason: str, memory: bool = False) -> None:
        """Something may be kept: measure every step from now on for a while (sampling.py),
        and watch every module call again (a root module memwatch does not know yet).
        A memory rise is no signal while the run's first steps allocate what they keep."""
        if memory and not self.sampling.memory_signals:
            return
        self.sampling.escalate(reason, memory)
        self._count_saved_now()
        self._rediscover()

    def _rediscover(self) -> None:
        modules = self._modules
        if modules.discovering and modules.pending is None:
            modules.rediscover()  # restarts the countdown
            return
        modules.rediscover()
        self._switch_modules()

    def _switch_modules(self) -> None:
        """Apply a pending module-hook switch, between forwards only."""
        if self._depth == 0 and self._modules.pending is not None and not self.off:
            try:
                self._modules.apply()
            except Exception as exc:
                self.fail("root-module hooks", exc)
            self._step_all_modules = False

    def _count_saved_now(self) -> None:
        """Push the saved-tensor hooks at once (the step already running stays marked as
        not counted: it was not counted from its start)."""
        hooks = self._saved_hooks
        if hooks is not None and not hooks.pushed and hooks.enabled and not self.off:
            try:
                hooks.resume()
            except Exception as exc:
                self.fail("saved-tensor counting", exc)

    def _count_first_pass_only(self) -> None:
        """A backward inside ``optimizer.step(closure)`` returned: count no more of this
        step's saved tensors, unless something looks wrong (``sampling.py``).

        LBFGS runs its closure up to 20 times a step, each pass a forward and backward
        alike, so the first pass tells the step's saved bytes and peak. Counting all of
        them made a counted step of pytorch/examples' time_sequence_prediction (620,000
        saved tensors) cost ×1.3; the run's first steps are counted (the warm-up), so a
        short run paid that in full. The step stays marked as counted: the tensors of the
        first pass that outlive the step (a graph kept by the closure) are still counted
        and released, a signal (``escalate``) counts the next passes again, and counting
        resumes when the ``step(closure)`` call returns (``closure_step_done``)."""
        hooks = self._saved_hooks
        if (
            hooks is None
            or not hooks.pushed
            or not self._step_counted
            or not self.sampling.enabled
            or self.sampling.counts_everything
        ):
            return
        try:
            self._closure_paused = hooks.pause()
        except Exception as exc:
            self.fail("saved-tensor sampling", exc)

    def closure_step_done(self) -> None:
        """The ``optimizer.step(closure)`` whose later passes were not counted returned:
        count again, since the step may go on (a second optimizer's closure, a loop's
        next forward before the step ends) and it is marked counted."""
        if not self._closure_paused:
            return
        self._closure_paused = False
        if self._step_counted:
            self._count_saved_now()

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

    def patch(self, owner: Any, name: str, replacement: Any) -> None:
        """Replace ``owner.name`` until the watch stops (for probes)."""
        self._installed.patch(owner, name, replacement)

    def add_handle(self, handle: Any) -> None:
        """Remove this hook handle when the watch stops (for probes)."""
        self._installed.add_handle(handle)

    # -- what the step machine may ask (memwatch.collect.steps.StepHost) ---------------------
    def step_ended(self, record: StepRecord, frame: FrameType | None) -> None:
        """The probes' ``on_step_end`` (with the user frames at the boundary), then the sink."""
        hook = "on_step_end" if record.saved_bytes is not None else "on_step_end:unmeasured"
        if self._hooks[hook]:
            frames = user_frames(frame, limit=4) if frame is not None else []
            self._call_probes(hook, record, frames)
            del frames
        self.sink.on_step(record)

    def send_event(self, event: Event) -> None:
        self.sink.on_event(event)

    def measured_flags(self) -> int:
        flags = MEASURED_ALL_MODULES if self._step_all_modules else 0
        if self._step_counted:
            flags |= MEASURED_SAVED
        return flags

    def note_optimizer(self, optimizer: Any) -> None:
        if optimizer in self._optimizers:
            return
        try:
            self._optimizers.add(optimizer)
        except TypeError:
            return
        if not self._modules.discovering:
            self._rediscover()  # a new optimizer: maybe a new model (k-fold, a rebuild)

    def step_settled(self, record: StepRecord) -> None:
        """Choose what the next step measures (sampling.py), from what this one showed."""
        self._closure_paused = False
        self._forward_kinds.clear()
        self.forward_weight = 1
        self._modules.step_end()
        self._switch_modules()
        self._step_all_modules = self._modules.discovering and self._modules.pending is None
        hooks = self._saved_hooks
        if hooks is None or not hooks.enabled:
            self._step_counted = False
            return
        try:
            now = time.process_time()
            cpu_s, self._cpu_mark = now - self._cpu_mark, now
            measure = self.sampling.step_end(
                record.saved_bytes is not None,
                cpu_s,
                hooks.packs,
                record.saved_bytes,
                record.rss_bytes,
                record.allocated_bytes,
                record.boundary in ("optimizer", "manual", "scaler") or record.backward_calls > 0,
            )
            hooks.packs = 0
            if measure:
                hooks.resume()
            else:
                hooks.pause()
            self._step_counted = hooks.pushed
        except Exception as exc:
            self.fail("saved-tensor sampling", exc)
            self.sampling.enabled = False
            self._step_counted = False

    def describe_device(self, device: int) -> None:
        """Tell the sink which CUDA device the run uses (first CUDA step, or a change)."""
        on_device = getattr(self.sink, "on_device", None)
        if on_device is None:
            return
        try:
            on_device(cuda.device_facts(device))
        except Exception as exc:
            self.fail("device description", exc)

    # -- install / remove -------------------------------------------------------------------
    def start(self) -> None:
        self._installed.install(self, self._steps, self._saved_hooks, self._modules)
        self._cpu_mark = time.process_time()
        self._step_counted = self._saved_hooks is not None and self._saved_hooks.pushed
        self._steps.start_clock()
        self._call_probes("on_start")

    def stop(self) -> None:
        """Close the open step (if anything happened in it) and remove every hook."""
        if self.off:
            return
        try:
            self._steps.finish(sys._getframe(1))
            self._call_probes("on_stop")
        finally:
            self._remove_hooks()

    def _remove_hooks(self) -> None:
        self.off = True
        self._installed.remove()
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

    def mark_step(self, frame: FrameType | None) -> None:
        """``mw.step()``: the user marks step ends by hand from now on."""
        self._steps.mark_step(frame)

    # -- the hooks' callbacks (hot path; memwatch.collect.hooks.HookTarget) -------------------
    def forward_pre(self, module: Any, args: Any) -> None:
        if _is_compiling() or self.off or threading.get_ident() != self._tid:
            return None
        self._depth += 1
        if self._depth == 1:
            try:
                if self._modules.discovering:
                    self._modules.note_root(module)
                self._steps.root_forward(module)  # may end a step first
                if self._note_root_module is not None:
                    self._note_root_module(module)
                if not self._step_counted and self._thin(module):
                    self._thinned = True  # the probes do not see this one (``_thin``)
                    return None
                self._hand_over(module, args)
            except Exception as exc:
                self.fail("step detection", exc)
        return None

    def _hand_over(self, module: Any, args: Any) -> None:
        """The probes see this root forward (``_thin`` did not skip it)."""
        self._thinned = False
        hooks = self._saved_hooks
        counting = hooks is not None and hooks.pushed
        self._root_saved_before = self.saved.current if counting else None
        if self._hooks["on_root_forward_pre"]:
            self._call_probes("on_root_forward_pre", module, args)

    def call_root(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A known root module's call, from its wrapper (``hooks._RootCall``, which has
        checked that torch.compile is not tracing): the forward hooks around
        ``_call_impl``. Where no step can end at a forward, a forward the probes skip
        (``_thin``) pays only the step machine's count (``StepBoundaries.
        quiet_root_forward``), the thinning's count and the depth (a step of hundreds of
        small forwards pays a few attribute reads each: ``_thin`` is inlined here).
        """
        if self._depth or self.off or _get_ident() != self._tid:
            return module._call_impl(*args, **kwargs)
        if not self._step_counted and self._steps.quiet_root_forward():
            # no step can end at this forward: only the thinning, and the probes' hooks
            # for a forward it hands over (``_thin``'s rule, inlined on this hot path)
            self._depth = 1
            key = (id(module), _grad_enabled(), module.training)
            kinds = self._forward_kinds
            seen = kinds.get(key, 0) + 1
            kinds[key] = seen
            self._thinned = seen > FORWARD_FULL and (seen - FORWARD_FULL) % FORWARD_THIN_EVERY != 0
            if not self._thinned:
                # handed over: itself, or itself and the ones skipped before it
                self.forward_weight = 1 if seen <= FORWARD_FULL else FORWARD_THIN_EVERY
                try:
                    if self._note_root_module is not None:
                        self._note_root_module(module)
                    self._hand_over(module, args)
                except Exception as exc:
                    self.fail("step detection", exc)
        else:
            self.forward_pre(module, args)
        if self._thinned:
            try:
                return module._call_impl(*args, **kwargs)
            except BaseException as exc:
                oom_observer.observe_exception(exc)  # as forward_post does for a failed call
                raise
            finally:
                self._depth = 0
                if self._modules.pending is not None:
                    self._switch_modules()
        try:
            result = module._call_impl(*args, **kwargs)
        except BaseException:
            self.forward_post(module, args, None)
            raise
        self.forward_post(module, args, result)
        return result

    def _thin(self, module: Any) -> bool:
        """Whether the probes skip this root forward of an uncounted step.

        Probes learn what they need from a step's first forwards of each kind (module,
        grad mode, train mode): a step of hundreds (an RL episode of batch-1 forwards, an
        unrolled RNN cell) would otherwise pay their hooks hundreds of times. Beyond
        ``FORWARD_FULL`` of a kind, one in ``FORWARD_THIN_EVERY`` is handed over and
        stands for that many (``forward_weight``: itself and those skipped before it; the
        fewer than ``FORWARD_THIN_EVERY`` after the last one handed over are not counted
        by the probes, the step record counts every forward); a new kind (an evaluation
        pass starting) is seen in full at once, and steps that count saved tensors see
        every forward.
        """
        key = (id(module), _grad_enabled(), module.training)
        kinds = self._forward_kinds
        seen = kinds.get(key, 0) + 1
        kinds[key] = seen
        if seen <= FORWARD_FULL:
            self.forward_weight = 1
            return False
        if (seen - FORWARD_FULL) % FORWARD_THIN_EVERY:
            return True
        self.forward_weight = FORWARD_THIN_EVERY  # itself and the ones skipped before it
        return False

    def forward_post(self, module: Any, args: Any, output: Any) -> None:
        if _is_compiling() or self.off or threading.get_ident() != self._tid:
            return None
        if output is None:
            # always_call hooks also run when the forward raised; an out-of-memory error
            # that is not torch.OutOfMemoryError (cuBLAS, cuDNN, MPS) is seen here.
            handling = sys.exc_info()[1]
            if handling is not None:
                oom_observer.observe_exception(handling)
        if self._depth == 1 and not self._thinned:
            try:
                # an evaluation forward that builds a graph while saved tensors are not
                # counted: a signal (graphs kept in inference, sampling.py)
                if (
                    not module.training
                    and not self._step_counted
                    and _grad_enabled()
                    and _builds_graph(output)
                ):
                    self.escalate("a forward in eval mode built a graph")
                if self._hooks["on_root_forward_post"]:
                    # None: the forward's saved tensors were not counted (sampling)
                    before = self._root_saved_before
                    delta = None if before is None else self.saved.current - before
                    self._call_probes("on_root_forward_post", module, output, delta)
            except Exception as exc:
                self.fail("forward hooks", exc)
        if self._depth > 0:
            self._depth -= 1
            if self._depth == 0 and self._modules.pending is not None:
                self._switch_modules()
        return None

    def run_backward(
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
            if not self._modules.discovering and self._steps.forward_calls == 0:
                self._rediscover()  # a backward without a known root forward: a new model?
            first = not self._steps.ever_backward
            self._steps.backward_done()
            if first:  # forward-only steps before it were a training iteration
                self.sampling.calm()
            if (retain or create) and not self.sampling.counts_everything:
                self.escalate("a backward kept its graph (retain_graph/create_graph)")
            elif self._steps.in_closure_step and not is_grad:
                self._count_first_pass_only()
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

    def new_module(self) -> None:
        """A module was built or copied after the roots were learnt (hooks.ModuleHooks):
        watch every module call again, so its first forward is seen."""
        if self.off or self._depth:
            return  # inside a forward: a buffer set by forward, a replica, a lazy layer
        try:
            if threading.get_ident() == self._tid:
                self._rediscover()  # applied now when no forward runs
            else:
                self._modules.rediscover()  # applied by the tracker's thread
        except Exception as exc:
            self.fail("root-module hooks", exc)

    def oom(self, info: dict[str, Any]) -> None:
        if self.off:
            return
        frame = info.get("frame")
        user = first_user_frame(frame) if frame is not None else None
        self._steps.oom_events += 1
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


def _builds_graph(output: Any) -> bool:
    """Whether a forward's output (a tensor, or one of the first few in a tuple, list or
    dict) carries autograd history."""
    if isinstance(output, torch.Tensor):
        return not output.is_leaf
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return any(isinstance(t, torch.Tensor) and not t.is_leaf for t in output[:8])
    return False


def _default_device() -> DeviceMemory:
    """The allocator reader on a CUDA build (it reads nothing until the program initialises
    CUDA), nothing on a CPU build."""
    if cuda.built() and cuda.can_read_allocator():
        try:
            return CudaMemory()
        except Exception:
            pass
    return NoDeviceMemory()
