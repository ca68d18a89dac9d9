"""Every CUDA call memwatch makes, in one place: lazily, per device, and without side effects.

Why one module: memwatch must never initialise CUDA in a program that does not use it (a
CPU-only program that later forks CUDA children would fail with "Cannot re-initialize
CUDA in forked subprocess"), must read the device the step actually used (under torchrun
rank r uses GPU r, chosen after memwatch started), and must not change what the user's
own ``torch.cuda.max_memory_allocated()`` reports. Keeping every ``torch.cuda`` and
``torch._C._cuda_*`` access here makes those rules checkable in one file, and lets the
test suite's fake CUDA layer (tests/fakecuda.py) stand in at the torch boundary while this
code runs exactly as on a GPU.

Rules:

* Nothing here initialises CUDA. ``initialized()`` reads ``torch.cuda.is_initialized()``
  (a flag); everything else is called only after it returned True, or from a call that
  torch itself runs during its own lazy initialisation (``when_initialized``).
  ``host_has_devices()`` counts devices through ``torch.cuda.device_count()``, which asks
  NVML first and initialises nothing when NVML answers.
* One allocator read per step: the raw ``torch._C._cuda_memoryStats(device)`` nested dict,
  not ``memory_allocated``/``memory_reserved``/``max_memory_allocated`` (each of those
  rebuilds and flattens the whole dict).
* Peaks: memwatch resets the allocator's peak at every step end to measure the peak within
  the step, and ``PeakLedger`` keeps what the user sees unchanged (see its docstring).

Private torch APIs are feature-detected; without them memwatch records less (None), never
wrong numbers.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

_STATS = "_cuda_memoryStats"
_RESET = "_cuda_resetPeakMemoryStats"
#: The device-generic twins (torch.accelerator.memory_stats / reset_peak_memory_stats).
_ACCEL_STATS = "_accelerator_getDeviceStats"
_ACCEL_RESET = "_accelerator_resetPeakStats"


# -- availability, without initialising anything ----------------------------------------------
def built() -> bool:
    """Whether this torch was built with CUDA (a constant; asks no driver)."""
    try:
        return bool(torch.backends.cuda.is_built())
    except Exception:
        return False


def initialized() -> bool:
    """Whether the program has initialised CUDA itself (never initialises it)."""
    if not built():
        return False
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:
        return False


def host_has_devices() -> bool:
    """Whether CUDA devices are visible, asked the way torch asks without initialising
    CUDA (``device_count()`` uses NVML when it can; it falls back to the runtime only
    when NVML fails). Used only when a budget must choose between CUDA and CPU."""
    if not built():
        return False
    try:
        return int(torch.cuda.device_count()) > 0
    except Exception:
        return False


def local_rank() -> int | None:
    value = os.environ.get("LOCAL_RANK")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# -- which device -------------------------------------------------------------------------------
def resolve_device(touched: int | None, current: int, rank: int | None, count: int) -> int:
    """The device a step used: the device of the tensors it touched when known; else the
    current device if the program selected one (anything but the default 0); else
    ``LOCAL_RANK`` when it names a visible device (torchrun without ``set_device``, or
    CUDA's own initialisation, which runs before the script's ``set_device``); else 0."""
    if touched is not None and touched >= 0:
        return touched
    if current != 0:
        return current
    if rank is not None and 0 <= rank < count:
        return rank
    return current


def current_device() -> int:
    return int(torch.cuda.current_device())


def device_count() -> int:
    return int(torch.cuda.device_count())


def step_device(touched: int | None = None) -> int | None:
    """The device to read at this step end, or None while CUDA is not initialised."""
    if not initialized():
        return None
    return resolve_device(touched, current_device(), local_rank(), device_count())


def device_of_module(module: Any) -> int | None:
    """The CUDA device index of ``module``'s first parameter (None: none, or not CUDA)."""
    try:
        param = next(module.parameters(), None)
    except Exception:
        return None
    if param is None or not param.is_cuda:
        return None
    return int(param.get_device())


# -- device facts -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What a run records about its device: name, size and how NVML can find it."""

    index: int
    name: str
    total_bytes: int
    uuid: str | None  # as torch prints it: no "GPU-"/"MIG-" prefix
    pci_bus_id: str | None  # "0000:3b:00.0" when torch has the fields


def device_facts(device: int) -> DeviceFacts:
    props: Any = torch.cuda.get_device_properties(device)
    uuid = getattr(props, "uuid", None)
    pci: str | None = None
    if all(hasattr(props, f) for f in ("pci_domain_id", "pci_bus_id", "pci_device_id")):
        pci = f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    return DeviceFacts(
        index=device,
        name=str(props.name),
        total_bytes=int(props.total_memory),
        uuid=str(uuid) if uuid is not None else None,
        pci_bus_id=pci,
    )


def free_and_total(device: int) -> tuple[int, int]:
    free, total = torch.cuda.mem_get_info(device)
    return int(free), int(total)


def empty_cache() -> None:
    torch.cuda.empty_cache()


# -- the per-process memory fraction (--budget) ---------------------------------------------------
def get_fraction(device: int) -> float | None:
    """The allocator's per-process fraction, or None where torch cannot tell it."""
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    if getter is None:
        return None
    return float(getter(device))


_fraction_setter: Any = None  # the original, while a budget watches the user's calls


def set_fraction(fraction: float, device: int) -> None:
    setter = _fraction_setter or torch.cuda.set_per_process_memory_fraction
    setter(float(fraction), device)


class FractionCalls:
    """Notes the devices whose fraction the user sets while a budget is active, so that
    the budget's restore does not overwrite the user's own choice."""

    def __init__(self) -> None:
        self.devices: set[int] = set()
        self._wrapper: Any = None

    def start(self) -> None:
        global _fraction_setter
        original = getattr(torch.cuda, "set_per_process_memory_fraction", None)
        if original is None or _fraction_setter is not None:
            return
        notes = self.devices

        def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
            original(fraction, device)
            try:
                index = torch.cuda._utils._get_device_index(device, optional=True)
                notes.add(int(index))
            except Exception:
                notes.add(-1)  # unknown device: treat every device as the user's

        set_per_process_memory_fraction.__doc__ = original.__doc__
        set_per_process_memory_fraction.__wrapped__ = original  # type: ignore[attr-defined]
        _fraction_setter = original
        self._wrapper = set_per_process_memory_fraction
        for owner in (torch.cuda, torch.cuda.memory):
            if getattr(owner, "set_per_process_memory_fraction", None) is original:
                owner.set_per_process_memory_fraction = set_per_process_memory_fraction  # type: ignore[attr-defined]

    def user_set(self, device: int) -> bool:
        return device in self.devices or -1 in self.devices

    def stop(self) -> None:
        global _fraction_setter
        original, wrapper = _fraction_setter, self._wrapper
        if original is None or wrapper is None:
            return
        for owner in (torch.cuda, torch.cuda.memory):
            if getattr(owner, "set_per_process_memory_fraction", None) is wrapper:
                owner.set_per_process_memory_fraction = original  # type: ignore[attr-defined]
        _fraction_setter = None
        self._wrapper = None


# -- deferring until the program initialises CUDA ------------------------------------------------
def when_initialized(action: Callable[[], None], what: str) -> Callable[[], None] | None:
    """Run ``action`` now if CUDA is initialised, else when the program initialises it
    (torch's own queue of lazy calls, run inside its initialisation). An exception there
    would fail the user's CUDA initialisation, so a failing ``action`` is reported with
    one line on stderr (``what`` is switched off), which no warning filter can turn into
    an exception. Returns a cancel function for a queued action; None when it ran now or
    cannot be queued (this torch has no ``_lazy_call``)."""

    def guarded() -> None:
        try:
            action()
        except Exception as exc:
            try:
                sys.stderr.write(f"memwatch: {what} switched off after an error ({exc!r})\n")
            except Exception:
                pass

    if initialized():
        guarded()
        return None
    lazy_call = getattr(torch.cuda, "_lazy_call", None)
    queue = getattr(torch.cuda, "_queued_calls", None)
    if lazy_call is None or not isinstance(queue, list):
        return None
    lazy_call(guarded)

    def cancel() -> None:
        calls = getattr(torch.cuda, "_queued_calls", None)
        if isinstance(calls, list):
            calls[:] = [c for c in calls if not (isinstance(c, tuple) and c[0] is guarded)]

    return cancel


def oom_observer_binding() -> Any:
    """The binding that attaches allocator OOM observers (None on CPU builds)."""
    return getattr(torch._C, "_cuda_attach_out_of_memory_observer", None)


def attach_oom_observer(observer: Callable[[int, int, int, int], None]) -> Any:
    """Attach the allocator's OOM observer (it cannot be detached); returns the binding
    used, or None. Attaching initialises CUDA in torch 2.13, and before initialisation
    there are no device allocators to attach to, so callers do this only once CUDA is
    initialised (or from inside its initialisation)."""
    attach = oom_observer_binding()
    if attach is None:
        return None
    attach(observer)
    return attach


# -- allocator statistics and the peaks the user sees -----------------------------------------
@dataclass(frozen=True, slots=True)
class AllocatorReading:
    """One read of a device's caching allocator at a step end."""

    device: int
    allocated_bytes: int
    reserved_bytes: int
    peak_allocated_bytes: int  # within memwatch's window (the step)


def _stat(stats: dict[str, Any], name: str, field: str) -> int:
    try:
        return int(stats[name]["all"][field])
    except (KeyError, TypeError, ValueError):
        return 0


def _peak_items(stats: Any) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """(path, stat dict) of every stat with a ``peak`` in an allocator stats dict: the
    dict is two levels deep (``allocated_bytes.all.peak``), some stats one
    (``oversize_allocations.peak``). A plain loop: this runs at every step end."""
    if not isinstance(stats, dict):
        return
    for name, value in stats.items():
        if type(value) is not dict:
            continue
        if "peak" in value:
            yield (name,), value
            continue
        for pool, stat in value.items():
            if type(stat) is dict and "peak" in stat:
                yield (name, pool), stat


def _fold_peaks(stats: Any, kept: dict[tuple[str, ...], int]) -> None:
    """Raise ``kept`` to every peak in ``stats``."""
    for path, stat in _peak_items(stats):
        peak = stat["peak"]
        if isinstance(peak, int) and peak > kept.get(path, -1):
            kept[path] = peak


def _raise_peaks(stats: Any, kept: dict[tuple[str, ...], int]) -> None:
    """Raise every ``peak`` in ``stats`` (in place) to at least what ``kept`` holds."""
    for path, stat in _peak_items(stats):
        floor = kept.get(path)
        if floor is not None and isinstance(stat["peak"], int) and floor > stat["peak"]:
            stat["peak"] = floor


class PeakLedger:
    """memwatch's in-step peak and the user's never-reset peak, from one allocator.

    The caching allocator has one set of peaks per device. memwatch resets them at every
    step end (the only way to know the peak *within* a step); to leave the user's
    statistics as they would be without memwatch, the raw bindings behind
    ``torch.cuda.memory_stats`` / ``max_memory_allocated`` / ``max_memory_reserved`` /
    ``memory_summary`` and ``torch.accelerator.memory_stats`` (``torch._C._cuda_memoryStats``,
    ``_accelerator_getDeviceStats``) are wrapped so that every ``peak`` they report is
    the maximum since the *user's* last reset: memwatch folds each peak into ``user``
    before resetting. The user's resets (``reset_peak_memory_stats`` and the deprecated
    ``reset_max_memory_allocated``/``cached``, all of which end in
    ``torch._C._cuda_resetPeakMemoryStats``) clear ``user`` and fold the allocator's
    current peak into memwatch's own ``carry`` first, so both views stay exact.

    Open windows (``start_window``/``window_peak``, used by ``find_batch_size``) receive
    every peak folded in between, so a search's trial keeps its peak across step ends.

    Once memwatch has reset a device, the wrappers stay installed for the life of the
    process (removing them would expose the reset peaks); they cost one walk of the
    stats dict per user call.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._raw_stats: Any = None
        self._raw_reset: Any = None
        self._wrappers: dict[str, tuple[Any, Any]] = {}  # name -> (original, wrapper)
        self._user: dict[int, dict[tuple[str, ...], int]] = {}
        self._carry: dict[int, int] = {}
        self._windows: dict[int, int] = {}
        self.reset_devices: set[int] = set()

    # -- installing --------------------------------------------------------------------------
    def install(self) -> bool:
        """Wrap the raw bindings (idempotent); False where this torch has none."""
        with self._lock:
            raw_stats = getattr(torch._C, _STATS, None)
            raw_reset = getattr(torch._C, _RESET, None)
            if raw_stats is None or raw_reset is None:
                return False
            mine = self._wrappers.get(_STATS)
            if mine is not None and raw_stats is mine[1]:
                return True  # still ours
            # A new allocator binding (first install, or the old wrapper was replaced):
            # a new ledger.
            self._wrappers.clear()
            self._user.clear()
            self._carry.clear()
            self._windows.clear()
            self.reset_devices.clear()
            self._raw_stats, self._raw_reset = raw_stats, raw_reset
            self._wrap(_STATS, raw_stats, self._user_stats_wrapper(raw_stats))
            self._wrap(_RESET, raw_reset, self._user_reset_wrapper(raw_reset))
            accel_stats = getattr(torch._C, _ACCEL_STATS, None)
            accel_reset = getattr(torch._C, _ACCEL_RESET, None)
            if accel_stats is not None and accel_reset is not None:
                self._wrap(_ACCEL_STATS, accel_stats, self._user_stats_wrapper(accel_stats))
                self._wrap(_ACCEL_RESET, accel_reset, self._user_reset_wrapper(accel_reset))
            return True

    def _wrap(self, name: str, original: Any, wrapper: Any) -> None:
        wrapper.__wrapped__ = original
        setattr(torch._C, name, wrapper)
        self._wrappers[name] = (original, wrapper)

    def uninstall_if_unused(self) -> None:
        """Remove the wrappers if memwatch never reset a peak (nothing to hide)."""
        with self._lock:
            if self.reset_devices:
                return
            for name, (original, wrapper) in self._wrappers.items():
                if getattr(torch._C, name, None) is wrapper:
                    setattr(torch._C, name, original)
            self._wrappers.clear()
            self._raw_stats = self._raw_reset = None

    def _user_stats_wrapper(self, original: Any) -> Any:
        ledger = self

        def memory_stats(device: Any) -> Any:
            stats = original(device)
            try:
                kept = ledger._user.get(int(device))
                if kept:
                    with ledger._lock:
                        _raise_peaks(stats, kept)
            except Exception:
                pass
            return stats

        return memory_stats

    def _user_reset_wrapper(self, original: Any) -> Any:
        ledger = self

        def reset_peak_stats(device: Any) -> Any:
            try:
                index = int(device)
                tracked = index in ledger.reset_devices
            except Exception:
                tracked = False
            if not tracked:
                return original(device)
            with ledger._lock:
                try:
                    ledger._fold_for_memwatch(index, ledger._raw_stats(index))
                except Exception:
                    pass
                ledger._user.pop(index, None)
                return original(device)

        return reset_peak_stats

    # -- memwatch's reads -----------------------------------------------------------------------
    def stats(self, device: int) -> dict[str, Any]:
        """The raw nested stats dict of ``device`` (memwatch's view: not raised)."""
        raw = self._raw_stats if self._raw_stats is not None else getattr(torch._C, _STATS)
        stats = raw(device)
        return stats if isinstance(stats, dict) else {}

    def allocated(self, device: int) -> int:
        return _stat(self.stats(device), "allocated_bytes", "current")

    def read_step(self, device: int) -> AllocatorReading:
        """Current, reserved and in-step peak of ``device``; starts the next step's window."""
        with self._lock:
            stats = self.stats(device)
            peak = max(_stat(stats, "allocated_bytes", "peak"), self._carry.pop(device, 0))
            reading = AllocatorReading(
                device=device,
                allocated_bytes=_stat(stats, "allocated_bytes", "current"),
                reserved_bytes=_stat(stats, "reserved_bytes", "current"),
                peak_allocated_bytes=peak,
            )
            self._reset(device, stats)
            return reading

    def start_window(self, device: int) -> None:
        with self._lock:
            stats = self.stats(device)
            self._fold_for_memwatch(device, stats)
            self._reset(device, stats)
            self._windows[device] = 0

    def window_peak(self, device: int) -> int:
        with self._lock:
            now = _stat(self.stats(device), "allocated_bytes", "peak")
            return max(now, self._windows.get(device, 0))

    def end_window(self, device: int) -> None:
        with self._lock:
            self._windows.pop(device, None)

    # -- folding ----------------------------------------------------------------------------------
    def _fold_for_memwatch(self, device: int, stats: dict[str, Any]) -> None:
        """Keep the allocator's current peak for memwatch's step and open windows."""
        peak = _stat(stats, "allocated_bytes", "peak")
        self._carry[device] = max(self._carry.get(device, 0), peak)
        if device in self._windows:
            self._windows[device] = max(self._windows[device], peak)

    def _reset(self, device: int, stats: dict[str, Any]) -> None:
        """Fold every peak into the user's view and the open window, then reset."""
        _fold_peaks(stats, self._user.setdefault(device, {}))
        if device in self._windows:
            peak = _stat(stats, "allocated_bytes", "peak")
            self._windows[device] = max(self._windows[device], peak)
        raw_reset = self._raw_reset if self._raw_reset is not None else getattr(torch._C, _RESET)
        self.reset_devices.add(device)
        raw_reset(device)


#: The one ledger of this process (the allocator is per process too).
PEAKS = PeakLedger()


def can_read_allocator() -> bool:
    """Whether this torch has the allocator bindings memwatch reads (CUDA builds)."""
    return all(getattr(torch._C, name, None) is not None for name in (_STATS, _RESET))
