"""Device memory numbers per step: the CUDA caching allocator, NVML device totals.

On a CPU build ``torch.cuda.memory_allocated()`` silently returns 0 (probe), and on a CUDA
build nothing may be asked before the program has initialised CUDA itself, so every
reading goes through ``memwatch.collect.cuda`` and is None until then: a CPU run records
None, never zeros. The device is resolved at every step end (see ``cuda.resolve_device``):
under torchrun each rank reads its own GPU, whatever was current when the watch started.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any, Protocol

from memwatch.collect import cuda, oom


@dataclass(frozen=True, slots=True)
class DeviceReading:
    allocated_bytes: int | None = None
    reserved_bytes: int | None = None
    peak_allocated_bytes: int | None = None
    device: int | None = None  # the CUDA device read (None: none was)


_NO_READING = DeviceReading()  # frozen: one shared reading of nothing


class DeviceMemory(Protocol):
    """What the tracker asks of a device at each step boundary."""

    def read_and_reset_peak(self) -> DeviceReading: ...


class NoDeviceMemory:
    """A CPU run without a budget: allocator numbers are unknowable, so all None."""

    # The optional readers other devices have, as None: the probes look them up with
    # ``getattr(device, name, None)`` at every step, and a missing attribute would build
    # and drop an AttributeError each time.
    tensors = None
    step_end_allocated = None
    current_allocated = None

    def read_and_reset_peak(self) -> DeviceReading:
        return _NO_READING


class CudaMemory:
    """The caching allocator of the device each step used, read once per step end.

    The in-step peak comes from resetting the allocator's peak at each step end; the
    user's own peak statistics are kept as if memwatch were absent (``cuda.PeakLedger``).
    Until the program initialises CUDA every reading is None and nothing is called.
    """

    tensors = None  # no tensor tracker (a budget's device has one): see NoDeviceMemory

    def __init__(self) -> None:
        self.device: int | None = None  # the device of the last step read
        self.step_end_allocated: int | None = None  # allocated at the last step end
        self._touched: int | None = None
        self._looked = False
        self._usable = cuda.PEAKS.install()

    def note_root_module(self, module: Any) -> None:
        """The step's first root forward: its parameters' device is the step's device."""
        if self._looked:
            return
        if cuda.initialized():
            self._looked = True
            self._touched = cuda.device_of_module(module)

    def current_allocated(self) -> int | None:
        if not self._usable:
            return None
        device = self.device if self.device is not None else cuda.step_device()
        if device is None:
            return None
        return cuda.PEAKS.allocated(device)

    def close(self) -> None:
        """The watch ends: the peak wrappers go if memwatch never reset a peak."""
        if self._usable:
            cuda.PEAKS.uninstall_if_unused()

    def read_and_reset_peak(self) -> DeviceReading:
        touched, self._touched, self._looked = self._touched, None, False
        if not self._usable:
            return DeviceReading()
        device = cuda.step_device(touched)
        if device is None:
            return DeviceReading()
        self.device = device
        oom.ensure_cuda_observer()
        reading = cuda.PEAKS.read_step(device)
        self.step_end_allocated = reading.allocated_bytes
        return DeviceReading(
            allocated_bytes=reading.allocated_bytes,
            reserved_bytes=reading.reserved_bytes,
            peak_allocated_bytes=reading.peak_allocated_bytes,
            device=device,
        )


def describe_device() -> tuple[str, str, int | None, int | None]:
    """(type, name, total bytes, CUDA index) of the device a run uses, as far as it is
    known without initialising CUDA (a run that initialises it later is described again
    at its first CUDA step)."""
    device = cuda.step_device()
    if device is not None:
        facts = cuda.device_facts(device)
        return "cuda", facts.name, facts.total_bytes, device
    return "cpu", platform.processor() or platform.machine() or "cpu", None, None


def _plain_uuid(uuid: Any) -> str:
    """UUIDs as NVML ("GPU-…", "MIG-…", bytes in old bindings) and torch (bare) print
    them, reduced to one form."""
    text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
    text = text.strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text


class NvmlSampler:
    """Memory used on the whole GPU (all processes), as ``nvidia-smi`` shows it.

    Each CUDA device is found in NVML by UUID (torch's logical index is not NVML's index
    under ``CUDA_VISIBLE_DEVICES`` or the default fastest-first ordering); MIG instances
    are found by their ``MIG-`` UUID and report the instance's memory; without a UUID the
    PCI bus id is used, and without either the device is not read (None) rather than
    read wrong. One NVML handle per physical device (or MIG instance), NVML started at the
    first read of an initialised CUDA device and shut down at ``close()``. NVML calls cost
    tens of microseconds, so each device is read at most once per ``min_interval_s``.
    """

    def __init__(self, min_interval_s: float = 1.0) -> None:
        self._nvml: Any = None
        self._off = False
        self._by_uuid: dict[str, Any] | None = None
        self._handles: dict[int, Any] = {}  # CUDA index -> handle (None: not found)
        self._last: dict[int, tuple[float, int]] = {}
        self._interval = min_interval_s

    def read(self, device: int | None) -> int | None:
        if device is None or self._off:
            return None
        try:
            if self._nvml is None:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            handle = self._handle(device)
            if handle is None:
                return None
            now = time.monotonic()
            last = self._last.get(device)
            if last is not None and now - last[0] < self._interval:
                return last[1]
            used = int(self._nvml.nvmlDeviceGetMemoryInfo(handle).used)
            self._last[device] = (now, used)
            return used
        except Exception:
            self._off = True  # no NVML here, or it failed: the column stays None
            return None

    def _handle(self, device: int) -> Any:
        if device in self._handles:
            return self._handles[device]
        facts = cuda.device_facts(device)
        handle = None
        if facts.uuid is not None:
            if self._by_uuid is None:
                self._by_uuid = self._index_by_uuid()
            handle = self._by_uuid.get(_plain_uuid(facts.uuid))
        elif facts.pci_bus_id is not None:
            try:
                handle = self._nvml.nvmlDeviceGetHandleByPciBusId(facts.pci_bus_id)
            except Exception:
                handle = None
        self._handles[device] = handle
        return handle

    def _index_by_uuid(self) -> dict[str, Any]:
        """Every GPU and MIG instance NVML sees, by UUID."""
        nvml = self._nvml
        found: dict[str, Any] = {}
        for index in range(int(nvml.nvmlDeviceGetCount())):
            gpu = nvml.nvmlDeviceGetHandleByIndex(index)
            found[_plain_uuid(nvml.nvmlDeviceGetUUID(gpu))] = gpu
            try:
                mode, _pending = nvml.nvmlDeviceGetMigMode(gpu)
            except Exception:  # not MIG-capable
                continue
            if mode != getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1):
                continue
            for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(gpu))):
                try:
                    mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, slot)
                except Exception:  # an empty slot
                    continue
                found[_plain_uuid(nvml.nvmlDeviceGetUUID(mig))] = mig
        return found

    def close(self) -> None:
        """Balance our ``nvmlInit`` (NVML counts them: other users keep theirs)."""
        nvml, self._nvml = self._nvml, None
        self._off = True
        self._handles.clear()
        self._by_uuid = None
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass
