"""A fake CUDA for a CPU machine: the torch bindings memwatch reaches, with an allocator model.

memwatch reads CUDA through ``memwatch.collect.cuda``, which calls torch's public
``torch.cuda`` functions and the raw ``torch._C._cuda_*`` bindings behind them. This fake
stands in *below* torch's Python layer: it installs the C bindings a CPU build lacks
(``torch._C._cuda_init``, ``_cuda_memoryStats``, ``_cuda_setDevice``, ...) and torch's
module state (``torch.cuda._initialized``, ``_queued_calls``, ``_cudart``), so torch's own
``torch.cuda.current_device()``, ``set_device``, ``max_memory_allocated()``,
``reset_peak_memory_stats()``, ``set_per_process_memory_fraction()``, ``_lazy_init`` and
``_lazy_call`` run unchanged on top of it, and so does memwatch — the code paths a GPU
runs.

What it models (from c10/cuda/CUDACachingAllocator.cpp, torch 2.13):

* per device: the caching allocator's statistics as the nested dict of
  ``_cuda_memoryStats`` (``allocation``, ``segment``, ``active``, ``allocated_bytes``,
  ``reserved_bytes``, ``active_bytes``, ``requested_bytes`` x ``all``/``small_pool``/
  ``large_pool`` x ``current``/``peak``/``allocated``/``freed``, ``num_ooms``,
  ``num_alloc_retries``), peaks reset to current by ``_cuda_resetPeakMemoryStats``;
* block rounding (512 B), pools (small <= 1 MiB), segment sizes (2 MiB for small blocks,
  20 MiB for 1-10 MiB requests, larger requests rounded to 2 MiB), cached free segments
  released and retried before an OOM, ``empty_cache``; within a segment, blocks fit while
  the segment has room (no fragmentation inside segments: a simplification);
* the per-process fraction (``allowed_memory_maximum = fraction x total``) capping
  *reserved* memory; ``get_per_process_memory_fraction``;
* CUDA initialisation (``_cuda_init`` through torch's real ``_lazy_init``, which runs the
  queued lazy calls), the current device and ``set_device`` (which initialises CUDA, as
  the C++ binding does), ``is_initialized``;
* the OOM: observers called with ``(device, alloc_size, allowed maximum or device total,
  device free)`` before ``torch.OutOfMemoryError`` is raised with the allocator's message
  format; attaching an observer initialises CUDA (as torch 2.13's binding does);
* not modelled: fragmentation inside a segment, streams, CUDA graphs, expandable
  segments, CUDA random generators (queued seeds are dropped);
* other out-of-memory failures raised as plain ``RuntimeError`` (cuBLAS, "CUDA error: out
  of memory", MPS) with their real messages;
* NVML (``FakeNvml``, installed as the ``pynvml`` module): devices by index and UUID, MIG
  instances with ``MIG-`` UUIDs, init/shutdown counts, memory used per device.

Every binding call is counted in ``FakeCuda.calls`` (name -> count) and
``FakeCuda.device_calls`` ((name, device) -> count).
"""

from __future__ import annotations

import threading
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SMALL_SIZE = 1 * MiB  # kSmallSize: requests up to this go to the small pool
_SMALL_BUFFER = 2 * MiB  # kSmallBuffer: small-pool segment size
_LARGE_BUFFER = 20 * MiB  # kLargeBuffer: segment for 1-10 MiB requests
_MIN_LARGE_ALLOC = 10 * MiB  # kMinLargeAlloc
_ROUND_LARGE = 2 * MiB  # kRoundLarge
_MIN_BLOCK = 512  # kMinBlockSize

_STAT_NAMES = (
    "allocation",
    "segment",
    "active",
    "allocated_bytes",
    "reserved_bytes",
    "active_bytes",
    "requested_bytes",
)


def format_size(size: int) -> str:
    """c10's format_size, as the OOM message prints sizes."""
    if size <= 1024:
        return f"{size} bytes"
    if size <= 1048576:
        return f"{size / 1024:.2f} KiB"
    if size <= 1073741824:
        return f"{size / 1048576:.2f} MiB"
    return f"{size / 1073741824:.2f} GiB"


def round_size(size: int) -> int:
    if size < _MIN_BLOCK:
        return _MIN_BLOCK
    return _MIN_BLOCK * ((size + _MIN_BLOCK - 1) // _MIN_BLOCK)


def allocation_size(size: int) -> int:
    """The segment cudaMalloc is asked for (get_allocation_size)."""
    if size <= _SMALL_SIZE:
        return _SMALL_BUFFER
    if size < _MIN_LARGE_ALLOC:
        return _LARGE_BUFFER
    return _ROUND_LARGE * ((size + _ROUND_LARGE - 1) // _ROUND_LARGE)


class _Stat:
    __slots__ = ("allocated", "current", "freed", "peak")

    def __init__(self) -> None:
        self.current = self.peak = self.allocated = self.freed = 0

    def add(self, amount: int) -> None:
        self.current += amount
        if amount > 0:
            self.allocated += amount
        else:
            self.freed -= amount
        self.peak = max(self.peak, self.current)

    def as_dict(self) -> dict[str, int]:
        return {
            "current": self.current,
            "peak": self.peak,
            "allocated": self.allocated,
            "freed": self.freed,
        }


@dataclass
class _Segment:
    size: int
    small: bool
    used: int = 0


@dataclass
class Block:
    """A live allocation on the fake device (free it with ``FakeCuda.free``)."""

    device: int
    size: int  # rounded
    requested: int
    segment: _Segment
    freed: bool = False


@dataclass
class FakeGpu:
    """One device as torch sees it (``uuid`` without prefix, as torch prints it)."""

    name: str = "NVIDIA H100 80GB HBM3 (fake)"
    total: int = 80 * GiB
    uuid: str = "00000000-0000-0000-0000-000000000000"
    other_process_bytes: int = 0  # memory other processes use on this GPU
    context_bytes: int = 500 * MiB  # this process's CUDA context (non-PyTorch memory)


class FakeAllocator:
    """The caching allocator of one device."""

    def __init__(self, index: int, gpu: FakeGpu) -> None:
        self.index = index
        self.gpu = gpu
        self.fraction: float | None = None
        self.segments: list[_Segment] = []
        self.stats = {
            name: {pool: _Stat() for pool in ("all", "small_pool", "large_pool")}
            for name in _STAT_NAMES
        }
        self.num_ooms = 0
        self.num_alloc_retries = 0

    # -- statistics -------------------------------------------------------------------------
    def _update(self, name: str, small: bool, amount: int) -> None:
        self.stats[name]["all"].add(amount)
        self.stats[name]["small_pool" if small else "large_pool"].add(amount)

    def nested(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: {pool: stat.as_dict() for pool, stat in pools.items()}
            for name, pools in self.stats.items()
        }
        out["num_ooms"] = self.num_ooms
        out["num_alloc_retries"] = self.num_alloc_retries
        return out

    def reset_peaks(self) -> None:
        for pools in self.stats.values():
            for stat in pools.values():
                stat.peak = stat.current

    @property
    def allocated(self) -> int:
        return self.stats["allocated_bytes"]["all"].current

    @property
    def reserved(self) -> int:
        return self.stats["reserved_bytes"]["all"].current

    @property
    def allowed(self) -> int | None:
        if self.fraction is None:
            return None
        return int(self.fraction * self.gpu.total)

    def free_bytes(self) -> int:
        """What cudaMemGetInfo reports free."""
        used = self.reserved + self.gpu.context_bytes + self.gpu.other_process_bytes
        return max(0, self.gpu.total - used)

    # -- allocating ---------------------------------------------------------------------------
    def malloc(self, requested: int) -> tuple[Block | None, int]:
        """A block, or (None, alloc_size) when the allocator would raise OOM."""
        size = round_size(requested)
        small = size <= _SMALL_SIZE
        segment = next(
            (s for s in self.segments if s.small == small and s.size - s.used >= size), None
        )
        alloc_size = allocation_size(size)
        if segment is None:
            if not self._can_reserve(alloc_size):
                self.num_alloc_retries += 1
                self.release_cached()
            if not self._can_reserve(alloc_size):
                return None, alloc_size
            segment = _Segment(alloc_size, small)
            self.segments.append(segment)
            self._update("segment", small, 1)
            self._update("reserved_bytes", small, alloc_size)
        segment.used += size
        for name, amount in (
            ("allocation", 1),
            ("active", 1),
            ("allocated_bytes", size),
            ("active_bytes", size),
            ("requested_bytes", requested),
        ):
            self._update(name, small, amount)
        return Block(self.index, size, requested, segment), alloc_size

    def _can_reserve(self, nbytes: int) -> bool:
        allowed = self.allowed
        if allowed is not None and self.reserved + nbytes > allowed:
            return False
        return nbytes <= self.free_bytes()

    def free(self, block: Block) -> None:
        if block.freed:
            return
        block.freed = True
        small = block.segment.small
        block.segment.used -= block.size
        for name, amount in (
            ("allocation", -1),
            ("active", -1),
            ("allocated_bytes", -block.size),
            ("active_bytes", -block.size),
            ("requested_bytes", -block.requested),
        ):
            self._update(name, small, amount)

    def release_cached(self) -> None:
        """Free segments with no live block (emptyCache, and before an OOM)."""
        for segment in [s for s in self.segments if s.used == 0]:
            self.segments.remove(segment)
            self._update("segment", segment.small, -1)
            self._update("reserved_bytes", segment.small, -segment.size)

    def oom_message(self, alloc_size: int) -> str:
        allowed = self.allowed
        allowed_info = f"{format_size(allowed)} allowed; " if allowed is not None else ""
        in_use = self.reserved + self.gpu.context_bytes
        return (
            f"CUDA out of memory. Tried to allocate {format_size(alloc_size)}. GPU "
            f"{self.index} has a total capacity of {format_size(self.gpu.total)} of which "
            f"{format_size(self.free_bytes())} is free. Including non-PyTorch memory, this "
            f"process has {format_size(in_use)} memory in use. {allowed_info}Of the allocated "
            f"memory {format_size(self.allocated)} is allocated by PyTorch, and "
            f"{format_size(self.reserved - self.allocated)} is reserved by PyTorch but "
            "unallocated. If reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See "
            "documentation for Memory Management  "
            "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)"
        )


class _Props:
    """What ``torch.cuda.get_device_properties`` returns (the fields memwatch reads)."""

    def __init__(self, gpu: FakeGpu, index: int) -> None:
        self.name = gpu.name
        self.total_memory = gpu.total
        self.uuid = gpu.uuid
        self.major, self.minor = 9, 0
        self.multi_processor_count = 132
        self.pci_domain_id, self.pci_bus_id, self.pci_device_id = 0, 0x18 + index, 0


class _Cudart:
    def __init__(self, fake: FakeCuda) -> None:
        self._fake = fake

    def cudaMemGetInfo(self, device: int) -> tuple[int, int]:
        self._fake._count("cudaMemGetInfo", device)
        allocator = self._fake.allocators[device]
        return allocator.free_bytes(), allocator.gpu.total


class FakeCuda:
    """The fake CUDA layer; ``install(monkeypatch)`` puts it in place for one test."""

    def __init__(self, gpus: list[FakeGpu] | None = None) -> None:
        self.gpus = gpus if gpus is not None else [FakeGpu(uuid=_uuid(i)) for i in range(2)]
        self.allocators = [FakeAllocator(i, gpu) for i, gpu in enumerate(self.gpus)]
        self.calls: Counter[str] = Counter()
        self.device_calls: Counter[tuple[str, int]] = Counter()
        self.observers: list[Any] = []
        self.current = 0
        self.inits = 0
        self._tls = threading.local()
        self._monkeypatch: pytest.MonkeyPatch | None = None

    # -- counting -----------------------------------------------------------------------------
    def _count(self, name: str, device: int | None = None) -> None:
        self.calls[name] += 1
        if device is not None:
            self.device_calls[(name, int(device))] += 1

    def reset_counts(self) -> None:
        self.calls.clear()
        self.device_calls.clear()

    # -- the bindings -------------------------------------------------------------------------
    def _device(self, device: Any) -> int:
        index = int(device)
        if index < 0:
            index = self.current
        if not 0 <= index < len(self.allocators):
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")
        return index

    def _get_device_count(self) -> int:
        self._count("_cuda_getDeviceCount")
        return len(self.gpus)

    def _init(self) -> None:
        self._count("_cuda_init")
        self.inits += 1
        assert self._monkeypatch is not None
        # The C++ init defines torch.cuda._get_device_properties.
        self._monkeypatch.setattr(
            torch.cuda, "_get_device_properties", self._properties, raising=False
        )

    def _properties(self, device: int) -> _Props:
        index = self._device(device)
        self._count("_get_device_properties", index)
        return _Props(self.gpus[index], index)

    def _get_device(self) -> int:
        self._count("_cuda_getDevice")
        return self.current

    def _set_device(self, device: int) -> None:
        self._count("_cuda_setDevice", device)
        torch.cuda._lazy_init()  # as THCPModule_setDevice_wrap: device_lazy_init first
        self.current = self._device(device)

    def _memory_stats(self, device: int) -> dict[str, Any]:
        index = self._device(device)
        self._count("_cuda_memoryStats", index)
        return self.allocators[index].nested()

    def _reset_peaks(self, device: int) -> None:
        index = self._device(device)
        self._count("_cuda_resetPeakMemoryStats", index)
        self.allocators[index].reset_peaks()

    def _empty_cache(self) -> None:
        self._count("_cuda_emptyCache")
        for allocator in self.allocators:
            allocator.release_cached()

    def _set_fraction(self, fraction: float, device: int) -> None:
        index = self._device(device)
        self._count("_cuda_setMemoryFraction", index)
        self.allocators[index].fraction = float(fraction)

    def _get_fraction(self, device: int) -> float:
        index = self._device(device)
        self._count("_cuda_getMemoryFraction", index)
        fraction = self.allocators[index].fraction
        return 1.0 if fraction is None else fraction

    def _attach_observer(self, observer: Any) -> None:
        self._count("_cuda_attach_out_of_memory_observer")
        torch.cuda._lazy_init()  # torch 2.13: lazyInitDevice(CUDA) before attaching
        self.observers.append(observer)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
        # Modules that decide at import time whether torch was built with CUDA (dynamo,
        # which the optimizers import lazily) must be imported as the CPU build they are.
        import torch._dynamo

        self._monkeypatch = monkeypatch
        bindings = {
            "_cuda_getDeviceCount": self._get_device_count,
            "_cuda_init": self._init,
            "_cuda_getDevice": self._get_device,
            "_cuda_setDevice": self._set_device,
            "_cuda_memoryStats": self._memory_stats,
            "_cuda_resetPeakMemoryStats": self._reset_peaks,
            "_cuda_emptyCache": self._empty_cache,
            "_cuda_setMemoryFraction": self._set_fraction,
            "_cuda_getMemoryFraction": self._get_fraction,
            "_cuda_attach_out_of_memory_observer": self._attach_observer,
        }
        # The device-generic twins behind torch.accelerator.memory_stats & co.
        bindings["_accelerator_isAllocatorInitialized"] = lambda: self.inits > 0
        bindings["_accelerator_getDeviceStats"] = self._memory_stats
        bindings["_accelerator_resetPeakStats"] = self._reset_peaks
        for name, binding in bindings.items():
            monkeypatch.setattr(torch._C, name, binding, raising=False)
        monkeypatch.setattr(torch._C, "_has_cuda", True)
        # torch.cuda's module state, as a fresh process has it.
        monkeypatch.setattr(torch.cuda, "_initialized", False)
        monkeypatch.setattr(torch.cuda, "_queued_calls", [])
        # Seeds queued by earlier torch.manual_seed calls would seed CUDA generators the
        # fake does not have: a fresh process's empty seed queue.
        monkeypatch.setattr(torch.cuda, "_lazy_seed_tracker", type(torch.cuda._lazy_seed_tracker)())
        monkeypatch.setattr(torch.cuda, "_cudart", _Cudart(self))
        monkeypatch.setattr(torch.cuda, "_cached_device_count", None)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        monkeypatch.delenv("LOCAL_RANK", raising=False)
        return self

    # -- what a program does on the GPU -------------------------------------------------------
    def alloc(self, nbytes: int, device: int | None = None) -> Block:
        """Allocate as a CUDA tensor would (initialising CUDA first, as torch does)."""
        torch.cuda._lazy_init()
        index = self.current if device is None else self._device(device)
        allocator = self.allocators[index]
        block, alloc_size = allocator.malloc(nbytes)
        if block is not None:
            return block
        allocator.num_ooms += 1
        limit = allocator.allowed if allocator.allowed is not None else allocator.gpu.total
        for observer in list(self.observers):
            observer(index, alloc_size, limit, allocator.free_bytes())
        raise torch.OutOfMemoryError(allocator.oom_message(alloc_size))

    def free(self, *blocks: Block) -> None:
        for block in blocks:
            self.allocators[block.device].free(block)

    @staticmethod
    def cublas_alloc_failure() -> RuntimeError:
        return RuntimeError(
            "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
        )

    @staticmethod
    def launch_out_of_memory() -> RuntimeError:
        return RuntimeError(
            "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported "
            "at some other API call, so the stacktrace below might be incorrect.\nFor "
            "debugging consider passing CUDA_LAUNCH_BLOCKING=1"
        )

    @staticmethod
    def mps_out_of_memory() -> RuntimeError:
        return RuntimeError(
            "MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.00 GB, "
            "max allowed: 18.13 GB). Tried to allocate 256.00 MB on private pool. Use "
            "PYTORCH_MPS_HIGH_WATERMARK_RATIO=0.0 to disable upper limit for memory "
            "allocations (may cause system failure)."
        )


def _uuid(index: int) -> str:
    return f"{index:08x}-1111-2222-3333-444444444444"


# -- NVML ------------------------------------------------------------------------------------
class NVMLError(Exception):
    pass


@dataclass
class NvmlDevice:
    """A physical GPU, or a MIG instance of one, as NVML sees it."""

    uuid: str  # with NVML's prefix: "GPU-…" or "MIG-…"
    used: int
    total: int = 80 * GiB
    mig: list[NvmlDevice] = field(default_factory=list)  # instances (MIG mode on)


class FakeNvml(types.ModuleType):
    """The ``pynvml`` functions memwatch calls, over a list of physical devices."""

    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self, devices: list[NvmlDevice]) -> None:
        super().__init__("pynvml")
        self.devices = devices
        self.inits = 0
        self.shutdowns = 0
        self.calls: Counter[str] = Counter()

    def nvmlInit(self) -> None:
        self.inits += 1

    def nvmlShutdown(self) -> None:
        if self.shutdowns >= self.inits:
            raise NVMLError("Uninitialized")
        self.shutdowns += 1

    def _check(self, name: str) -> None:
        self.calls[name] += 1
        if self.inits <= self.shutdowns:
            raise NVMLError("Uninitialized")

    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> NvmlDevice:
        self._check("nvmlDeviceGetHandleByIndex")
        return self.devices[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> NvmlDevice:
        self._check("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for device in self.devices:
            if device.uuid == text:
                return device  # physical GPUs only: MIG lookups need the MIG handle API
        raise NVMLError("Not Found")

    def nvmlDeviceGetUUID(self, handle: NvmlDevice) -> str:
        self._check("nvmlDeviceGetUUID")
        return handle.uuid

    def nvmlDeviceGetMigMode(self, handle: NvmlDevice) -> tuple[int, int]:
        self._check("nvmlDeviceGetMigMode")
        mode = self.NVML_DEVICE_MIG_ENABLE if handle.mig else 0
        return mode, mode

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: NvmlDevice) -> int:
        self._check("nvmlDeviceGetMaxMigDeviceCount")
        return 7 if handle.mig else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: NvmlDevice, index: int) -> Any:
        self._check("nvmlDeviceGetMigDeviceHandleByIndex")
        if index >= len(handle.mig):
            raise NVMLError("Not Found")
        return handle.mig[index]

    def nvmlDeviceGetMemoryInfo(self, handle: NvmlDevice) -> Any:
        self._check("nvmlDeviceGetMemoryInfo")
        return types.SimpleNamespace(used=handle.used, total=handle.total)

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> NvmlDevice:
        self._check("nvmlDeviceGetHandleByPciBusId")
        raise NVMLError("Not Found")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
        import sys

        monkeypatch.setitem(sys.modules, "pynvml", self)
        return self
