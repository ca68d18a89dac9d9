"""``--budget`` / ``memwatch(budget=..., track_tensors=True)``: a device of a chosen size.

Why this exists: OOM handling (retry loops, batch-size searches) cannot be tested on a
CPU, where nothing runs out. With a budget the device behaves as if it had SIZE bytes:

* **CUDA** — the caching allocator's own per-process limit
  (``torch.cuda.set_per_process_memory_fraction(budget / total)``) on the rank's own
  device, applied when the program initialises CUDA (torch's queue of lazy calls: memwatch
  never initialises CUDA itself) and restored on uninstall — unless the user set a
  fraction on that device during the watch, which is theirs and stays. The OOM is the
  allocator's real one; step numbers come from the allocator as always. The fraction
  caps *reserved* memory (blocks rounded to 512 B / 2 MiB, 2 MiB segments for small
  blocks, 20 MiB segments for 1-10 MiB requests, cached free blocks), so a budget that
  fits on CPU, where live tensor bytes are counted, can run out sooner on a GPU.
* **CPU** — memwatch counts the bytes of live tensors created under the watch on the
  training thread: a ``TorchDispatchMode`` sees every aten op's outputs, registers each new
  storage once (views and in-place results share their input's storage and are skipped
  by the op's schema), and a weakref callback on the storage takes its bytes back when
  it is freed. The op whose outputs push the total past the budget raises
  ``torch.OutOfMemoryError`` with a CUDA-style message; its outputs are dropped first, so
  the refused memory is never held.

The same counting without a limit (``track_tensors=True``) gives CPU runs real
``allocated_bytes`` / ``peak_allocated_bytes`` per step (live tracked bytes at step end,
peak within the step), which CPU runs otherwise lack.

Cost: per-op interception is the only mechanism that sees every allocation, including
backward's and the optimizer's, and it is the expensive one (a Python call per aten op;
see docs/oom.md for the measured ratio), so it runs only in this opt-in mode. Under a
dispatch mode torch.compile'd code runs eagerly, which is acceptable only here.

What is not counted: tensors created before the watch started (``memwatch run`` starts
it before the script, so there everything is counted), tensors created on other threads,
and anything in forked DataLoader workers (the child switches the counting off).
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Iterator
from types import FrameType
from typing import Any

import torch

try:  # private: the CPU counting's only mechanism; without it the counting is off
    from torch.utils import _python_dispatch
except ImportError:  # pragma: no cover - a torch without the module
    _python_dispatch = None  # type: ignore[assignment]

from memwatch.collect import cuda
from memwatch.collect import oom as oom_observer
from memwatch.collect.device import CudaMemory, DeviceMemory, DeviceReading, NoDeviceMemory
from memwatch.notices import notice

_Tensor = torch.Tensor
_WRAPPER_FILES = (
    os.path.join("torch", "_dynamo", "eval_frame.py"),
    os.path.join("torch", "_compile.py"),
)
_NEW = 0  # the op's outputs are fresh tensors: register their storages
_ALIAS = 1  # outputs alias inputs (views, in-place ops): the storage exists already
_GROW = 2  # resize_, set_, out= variants: an existing storage may have grown


def cuda_style_size(num_bytes: int) -> str:
    """Sizes as the CUDA caching allocator prints them in its OOM message (c10 format_size)."""
    if num_bytes <= 1024:
        return f"{num_bytes} bytes"
    if num_bytes <= 1024**2:
        return f"{num_bytes / 1024:.2f} KiB"
    if num_bytes <= 1024**3:
        return f"{num_bytes / 1024**2:.2f} MiB"
    return f"{num_bytes / 1024**3:.2f} GiB"


#: Said after the CUDA-style text (which retry code matches on): whose limit this is.
SIMULATED_NOTE = (
    "This limit is memwatch's simulated budget (--budget), not the device running out of memory."
)


def budget_oom_message(requested: int, in_use: int, budget: int) -> str:
    return (
        f"CUDA out of memory (memwatch budget). Tried to allocate {cuda_style_size(requested)}. "
        f"{cuda_style_size(in_use)} already allocated; budget {cuda_style_size(budget)}. "
        f"{SIMULATED_NOTE} It counts live tensor bytes; on a GPU the same budget caps reserved "
        "memory, rounded to 2 MiB blocks and 20 MiB segments, and can run out sooner."
    )


def _dispatch_api() -> tuple[Any, Any] | None:
    """``(TorchDispatchMode, _get_current_dispatch_mode)`` of this torch, looked up now;
    None when either is missing (torch.utils._python_dispatch is private)."""
    mode = getattr(_python_dispatch, "TorchDispatchMode", None)
    current = getattr(_python_dispatch, "_get_current_dispatch_mode", None)
    return None if mode is None or current is None else (mode, current)


_api_at_import = _dispatch_api()
#: TensorTracker's base: the dispatch mode where this torch has one (a plain object keeps
#: this module importable on a torch without it; the tracker is then never created).
_DispatchModeBase: Any = _api_at_import[0] if _api_at_import is not None else object


class _StorageRef(weakref.ref):
    """The registry entry of one tracked storage *is* its weakref: no extra object per op."""

    __slots__ = ("key", "nbytes", "seq")

    key: int
    nbytes: int
    seq: int


class TensorTracker(_DispatchModeBase):
    """Live bytes of CPU tensors created under it, optionally refusing to pass a budget.

    ``live`` is exact at op granularity; ``peak`` is the highest ``live`` since the last
    ``read_step_peak()`` (the tracker's step boundary); ``watermark`` is the same for
    callers that measure their own window (``find_batch_size``) without disturbing steps.
    Every registered storage gets a sequence number, so "the tensors created since X and
    still alive" is exact (``alive_since``): this is how the OOM probe tells a failed
    attempt's memory from everything else.
    """

    def __init__(self, budget_bytes: int | None = None) -> None:
        super().__init__()
        self.budget_bytes = budget_bytes
        self.enabled = True
        self.live = 0
        self.peak = 0
        self.watermark = 0
        self.seq = 0
        self.ooms = 0
        self.storages: dict[int, _StorageRef] = {}
        self._kinds: dict[Any, int] = {}
        self._lock = threading.RLock()
        self._tid = threading.get_ident()
        self._pid = os.getpid()
        self._pushed = False
        self._failed = False
        self._raised_frames: list[FrameType] = []

    # -- the hot path -------------------------------------------------------------------------
    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        if self._raised_frames:
            self.release_raised_frames()
        out = func(*args, **kwargs) if kwargs else func(*args)
        if not self.enabled:
            return out
        try:
            kind = self._kinds.get(func)
            if kind is None:
                kind = self._classify(func)
            if kind == _ALIAS:
                return out
            if kind == _NEW and type(out) is _Tensor:  # the common case, kept short
                entry = self._new_storage(out)
                if entry is not None:
                    budget = self.budget_bytes
                    if budget is not None and self.live + entry.nbytes > budget:
                        requested = entry.nbytes
                        del entry, out  # drop the refused memory: no frame may keep it
                        raise self._oom(requested)
                    self._register(entry)
                return out
            fresh: list[_StorageRef] = []
            grown: list[tuple[_StorageRef, int]] = []
            for tensor in _tensors(out):
                made = self._new_storage(tensor)
                if made is not None:
                    fresh.append(made)
                elif kind == _GROW:  # resize_ / out=: a tracked storage may have grown
                    known = self.entry_for(tensor)
                    if known is not None:
                        delta = tensor.untyped_storage().nbytes() - known.nbytes
                        if delta > 0:
                            grown.append((known, delta))
            requested = sum(e.nbytes for e in fresh) + sum(d for _, d in grown)
            if requested:
                budget = self.budget_bytes
                if budget is not None and self.live + requested > budget:
                    # A grown storage has grown already; it stays counted at its old size,
                    # which keeps the count consistent when it is freed.
                    del fresh, grown, out
                    raise self._oom(requested)
                for new in fresh:
                    self._register(new)
                for known, delta in grown:
                    self._grow(known, delta)
        except oom_observer.OutOfMemoryError:
            raise
        except Exception as exc:
            self._fail(exc)
        return out

    def _classify(self, func: Any) -> int:
        """How an op's outputs relate to memory, from its schema (cached per op)."""
        try:
            schema = func._schema
            if not any(r.alias_info is not None for r in schema.returns):
                kind = _NEW
            elif (
                "resize" in schema.name
                or schema.name.endswith("set_")
                or ("out" in schema.overload_name)
            ):
                kind = _GROW
            else:
                kind = _ALIAS  # views and in-place ops: the storage exists already
        except Exception:
            kind = _NEW
        self._kinds[func] = kind
        return kind

    def _new_storage(self, tensor: Any) -> _StorageRef | None:
        """An unregistered entry for ``tensor``'s storage, or None (known, empty, not CPU)."""
        if type(tensor) is not _Tensor or not tensor.is_cpu:
            return None
        try:
            storage = tensor.untyped_storage()
        except Exception:  # sparse and other storage-less layouts
            return None
        key = storage._cdata
        if key in self.storages:
            return None
        nbytes = storage.nbytes()
        if nbytes == 0:
            return None
        entry = _StorageRef(storage, self._freed)
        entry.key = key
        entry.nbytes = nbytes
        return entry

    def _register(self, entry: _StorageRef) -> None:
        with self._lock:
            if entry.key in self.storages:  # two outputs of one op sharing a storage
                return
            self.seq += 1
            entry.seq = self.seq
            self.storages[entry.key] = entry
            self._add(entry.nbytes)

    def _grow(self, entry: _StorageRef, delta: int) -> None:
        with self._lock:
            if self.storages.get(entry.key) is entry:
                entry.nbytes += delta
                self._add(delta)

    def _add(self, nbytes: int) -> None:
        live = self.live + nbytes
        self.live = live
        if live > self.peak:
            self.peak = live
        if live > self.watermark:
            self.watermark = live

    def _freed(self, ref: Any) -> None:
        # Runs when a tracked storage is deallocated (any thread, possibly at shutdown).
        try:
            with self._lock:
                entry = self.storages.get(ref.key)
                if entry is not None and entry is ref:
                    del self.storages[entry.key]
                    self.live -= entry.nbytes
        except Exception:
            pass

    def _oom(self, requested: int) -> RuntimeError:
        budget = self.budget_bytes if self.budget_bytes is not None else 0
        self.ooms += 1
        self._remember_raising_frames(sys._getframe(1))
        oom_observer.note_pending(
            {
                "requested_bytes": int(requested),
                "in_use_bytes": int(self.live),
                "budget_bytes": int(budget),
                "source": "memwatch-budget",
            }
        )
        return oom_observer.OutOfMemoryError(budget_oom_message(requested, self.live, budget))

    def _remember_raising_frames(self, frame: FrameType | None) -> None:
        """The dispatch frame and torch's dynamo-disable wrappers around it hold the
        failing op's inputs (in backward: intermediate gradients that a real allocator OOM
        would free at once). The exception's traceback keeps those frames, so they are
        cleared as soon as they have finished: at the next op, at the retry, or at
        uninstall."""
        frames: list[FrameType] = []
        while frame is not None and len(frames) < 4:
            frames.append(frame)
            frame = frame.f_back
            if frame is None or not frame.f_code.co_filename.endswith(_WRAPPER_FILES):
                break
        self._raised_frames.extend(frames)

    def release_raised_frames(self) -> None:
        frames, self._raised_frames = self._raised_frames, []
        for frame in frames:
            try:
                frame.clear()
            except RuntimeError:  # still executing (cannot happen after the raise)
                pass

    def _fail(self, exc: BaseException) -> None:
        self.enabled = False
        if not self._failed:
            self._failed = True
            notice(
                f"tensor tracking switched off after an internal error ({exc!r}); "
                "training continues without the budget"
            )

    # -- reading ----------------------------------------------------------------------------
    def read_step_peak(self) -> tuple[int, int]:
        """(live, peak since the last call); the next window starts at ``live``."""
        with self._lock:
            live, peak = self.live, max(self.peak, self.live)
            self.peak = live
        return live, peak

    def reset_watermark(self) -> None:
        with self._lock:
            self.watermark = self.live

    def alive_since(self, seq: int) -> dict[int, tuple[int, int]]:
        """{storage key: (seq, bytes)} of tracked storages registered after ``seq`` that
        are still alive."""
        with self._lock:
            return {
                key: (entry.seq, entry.nbytes)
                for key, entry in self.storages.items()
                if entry.seq > seq
            }

    def alive_with_seqs(self, seqs: frozenset[int] | set[int]) -> dict[int, int]:
        """{storage key: bytes} of the storages with these sequence numbers still alive."""
        if not seqs:
            return {}
        with self._lock:
            return {key: e.nbytes for key, e in self.storages.items() if e.seq in seqs}

    def entry_for(self, tensor: Any) -> _StorageRef | None:
        """The registry entry of ``tensor``'s storage (None if untracked)."""
        try:
            return self.storages.get(tensor.untyped_storage()._cdata)
        except Exception:
            return None

    # -- installing ---------------------------------------------------------------------------
    def enter(self) -> None:
        """Enter the mode on the calling (training) thread."""
        self.__enter__()
        self._pushed = True
        self._tid = threading.get_ident()

    def leave(self) -> bool:
        """Leave the mode; False (and counting off) when it cannot be popped cleanly."""
        self.enabled = False
        self.release_raised_frames()
        if not self._pushed:
            return True
        api = _dispatch_api()
        current = api[1]() if api is not None else None
        if threading.get_ident() != self._tid or current is not self:
            # Another thread, or someone entered a mode above ours and left it there:
            # popping would remove theirs. Ours stays as a pass-through.
            return False
        self.__exit__(None, None, None)
        self._pushed = False
        return True

    def forget(self) -> None:
        """Drop the registry (its weakref callbacks will never fire)."""
        with self._lock:
            self.storages.clear()
            self.live = self.peak = self.watermark = 0


def _tensors(out: Any) -> Iterator[Any]:
    if isinstance(out, _Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for item in out:
            if isinstance(item, _Tensor):
                yield item
            elif isinstance(item, (tuple, list)):
                yield from (t for t in item if isinstance(t, _Tensor))


class TrackedMemory:
    """``DeviceMemory`` for CPU runs: allocated / peak are live tracked tensor bytes."""

    def __init__(self, tensors: TensorTracker) -> None:
        self.tensors = tensors

    def current_allocated(self) -> int:
        return self.tensors.live

    def read_and_reset_peak(self) -> DeviceReading:
        live, peak = self.tensors.read_step_peak()
        return DeviceReading(allocated_bytes=live, reserved_bytes=None, peak_allocated_bytes=peak)


class Budget:
    """What ``install_budget`` returns to the session: the device view and the undo.

    ``tensors`` is the CPU ``TensorTracker`` (None on CUDA, where the allocator counts).
    ``capacity_bytes`` is the memory the watched program may use (the budget, or the CUDA
    device's memory when only tracking), None when unknown.
    """

    def __init__(self, budget_bytes: int | None) -> None:
        self.budget_bytes = budget_bytes
        self.tensors: TensorTracker | None = None
        self.cuda_device: int | None = None  # where the limit was applied (or None)
        self._previous_fraction: float | None = None  # None: torch could not tell it
        self._limited = False
        self._cancel_limit: Any = None
        self._fraction_calls: cuda.FractionCalls | None = None
        self._device: DeviceMemory | None = None
        self._installed = False

    def install(self, cpu: bool = False) -> Budget:
        if not cpu and cuda.host_has_devices():
            self._install_cuda()
        elif _dispatch_api() is None or _api_at_import is None:
            lost = "the budget is not applied" if self.budget_bytes is not None else "no bytes"
            notice(
                "this torch has no torch.utils._python_dispatch.TorchDispatchMode: CPU "
                f"tensors are not counted ({lost}); the program runs unchanged"
            )
            self._device = NoDeviceMemory()
        else:
            self.tensors = TensorTracker(self.budget_bytes)
            self.tensors.enter()
            self._device = TrackedMemory(self.tensors)
        self._installed = True
        return self

    def _install_cuda(self) -> None:
        self._device = CudaMemory()
        if self.budget_bytes is None:
            return
        self._fraction_calls = cuda.FractionCalls()
        self._fraction_calls.start()
        if cuda.initialized():
            self._limit(default_known=False)
            return
        # Not before the program initialises CUDA itself; then the fraction set before is
        # the default 1.0 (setting one initialises CUDA), whatever torch can report.
        self._cancel_limit = cuda.when_initialized(
            lambda: self._limit(default_known=True), "the budget on the GPU"
        )
        if self._cancel_limit is None and not self._limited:
            notice(
                "this torch cannot defer a call to CUDA's initialisation, so the "
                "budget is not applied on the GPU"
            )

    def _limit(self, default_known: bool) -> None:
        """Apply the budget as the allocator's fraction on the rank's own device (may run
        inside torch's CUDA initialisation: nothing here may initialise CUDA again)."""
        assert self.budget_bytes is not None
        device = cuda.resolve_device(
            None, cuda.current_device(), cuda.local_rank(), cuda.device_count()
        )
        total = cuda.device_facts(device).total_bytes
        previous = cuda.get_fraction(device)
        if previous is None and default_known:
            previous = 1.0
        cuda.empty_cache()  # cached blocks above the new limit would otherwise stay reserved
        cuda.set_fraction(min(1.0, max(0.0, self.budget_bytes / total)), device)
        self.cuda_device = device
        self._previous_fraction = previous
        self._limited = True

    def device_memory(self) -> DeviceMemory:
        assert self._device is not None, "install() first"
        return self._device

    @property
    def capacity_bytes(self) -> int | None:
        if self.budget_bytes is not None:
            return self.budget_bytes
        device = self._cuda_device_now()
        if device is not None:
            return cuda.device_facts(device).total_bytes
        return None

    def _cuda_device_now(self) -> int | None:
        if self.cuda_device is not None:
            return self.cuda_device
        if self.tensors is None:
            return cuda.step_device()
        return None

    def in_use_bytes(self) -> int | None:
        if self.tensors is not None:
            return self.tensors.live
        device = self._cuda_device_now()
        if device is not None:
            return cuda.PEAKS.allocated(device)
        return None

    def uninstall(self) -> None:
        """Restore everything install changed; safe to call twice."""
        if not self._installed:
            return
        self._installed = False
        if self.tensors is not None:
            popped = self.tensors.leave()
            if popped:
                self.tensors.forget()
            else:
                notice(
                    "the tensor-tracking dispatch mode could not be removed cleanly "
                    "(another mode sits above it, or the watch ended on another thread); it "
                    "stays as a pass-through"
                )
        cancel, self._cancel_limit = self._cancel_limit, None
        if cancel is not None:
            cancel()  # CUDA was never initialised: the limit was never applied
        calls, self._fraction_calls = self._fraction_calls, None
        try:
            if self._limited and self.cuda_device is not None:
                self._restore_fraction(self.cuda_device, calls)
        finally:
            self._limited = False
            if calls is not None:
                calls.stop()

    def _restore_fraction(self, device: int, calls: cuda.FractionCalls | None) -> None:
        if calls is not None and calls.user_set(device):
            return  # the user set their own fraction during the watch: it stays
        previous = self._previous_fraction
        if previous is None:
            notice(
                "this torch cannot report the memory fraction set before the "
                "watch (no get_per_process_memory_fraction); the budget's limit is lifted "
                "to the default 1.0"
            )
            previous = 1.0
        cuda.set_fraction(previous, device)

    def after_fork_in_child(self) -> None:
        """A forked DataLoader worker must neither count nor refuse anything."""
        if self.tensors is not None:
            self.tensors.enabled = False
            try:
                self.tensors.leave()
            except Exception:
                pass
            self.tensors.storages = {}  # no lock: the child has a single thread here


def install_budget(budget_bytes: int | None, *, cpu: bool = False) -> Budget:
    """Make the device behave as if it had ``budget_bytes`` (None: only count tensors).

    On a host with CUDA devices the budget is the allocator's limit (``cpu=True``: count
    CPU tensors anyway, for a program that does not use CUDA). Must be called on the
    training thread: the CPU dispatch mode is per thread.
    """
    return Budget(budget_bytes).install(cpu=cpu)


def active_budget() -> Budget | None:
    """The budget of the running watch, if it has one (``find_batch_size`` uses it)."""
    from memwatch.collect import active

    return active.active_budget()
