"""Device memory numbers per step: the CUDA caching allocator, NVML device totals.

On a CPU build ``torch.cuda.memory_allocated()`` silently returns 0 (probe), so every
reading is gated on ``torch.cuda.is_available()``: a CPU run records None, never zeros.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True, slots=True)
class DeviceReading:
    allocated_bytes: int | None = None
    reserved_bytes: int | None = None
    peak_allocated_bytes: int | None = None


class DeviceMemory(Protocol):
    """What the tracker asks of a device at each step boundary."""

    def read_and_reset_peak(self) -> DeviceReading: ...


class NoDeviceMemory:
    """A CPU run without a budget: allocator numbers are unknowable, so all None."""

    def read_and_reset_peak(self) -> DeviceReading:
        return DeviceReading()


class CudaMemory:
    """The caching allocator of the current CUDA device.

    The peak is reset at each step boundary so that ``peak_allocated_bytes`` is the peak
    *within* the step; this is documented because it also resets what the user's own
    ``torch.cuda.max_memory_allocated()`` reports.
    """

    def __init__(self, device: int | None = None) -> None:
        self.device = torch.cuda.current_device() if device is None else device
        torch.cuda.reset_peak_memory_stats(self.device)

    def current_allocated(self) -> int:
        return int(torch.cuda.memory_allocated(self.device))

    def read_and_reset_peak(self) -> DeviceReading:
        reading = DeviceReading(
            allocated_bytes=int(torch.cuda.memory_allocated(self.device)),
            reserved_bytes=int(torch.cuda.memory_reserved(self.device)),
            peak_allocated_bytes=int(torch.cuda.max_memory_allocated(self.device)),
        )
        torch.cuda.reset_peak_memory_stats(self.device)
        return reading


def cuda_available() -> bool:
    try:
        return bool(torch.cuda.is_available())
    except Exception:
        return False


def describe_device() -> tuple[str, str, int | None]:
    """(type, name, total bytes) of the device a run uses."""
    if cuda_available():
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return "cuda", str(props.name), int(props.total_memory)
    import platform

    return "cpu", platform.processor() or platform.machine() or "cpu", None


class NvmlSampler:
    """Memory used on the whole GPU (all processes), as ``nvidia-smi`` shows it.

    NVML calls cost tens of microseconds, so the sampler reads at most once per
    ``min_interval_s`` and repeats the last value in between. Disabled (None) without a
    GPU or without nvidia-ml-py.
    """

    def __init__(self, min_interval_s: float = 1.0) -> None:
        self._handle: Any = None
        self._nvml: Any = None
        self._last_time = 0.0
        self._last: int | None = None
        self._interval = min_interval_s
        if not cuda_available():
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = torch.cuda.current_device()
            uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
            if uuid is not None:
                self._handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            else:
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
        except Exception:
            self._handle = None

    def read(self) -> int | None:
        if self._handle is None:
            return None
        now = time.monotonic()
        if now - self._last_time >= self._interval:
            try:
                self._last = int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
            except Exception:
                self._handle = None
                return None
            self._last_time = now
        return self._last
