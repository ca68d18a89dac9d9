"""Observing out-of-memory errors wherever they come from, handled or not.

``torch.OutOfMemoryError`` (the same class as ``torch.cuda.OutOfMemoryError``) is a heap
type, and its ``__init__`` runs for raises from Python and from C alike (on 3.11 C-raised
exceptions are instantiated lazily when caught, which still calls it). Patching it costs
nothing while no OOM happens. On CUDA builds the allocator's OOM observer adds the sizes
the allocator knew at the time; it is attached once the program has initialised CUDA
(attaching initialises CUDA, and before that there is no device allocator to attach to).

Some out-of-memory failures are plain ``RuntimeError``s: cuBLAS/cuDNN workspace or handle
allocation ("CUBLAS_STATUS_ALLOC_FAILED", cuDNN's NOT_SUPPORTED after a failed workspace
allocation), "CUDA error: out of memory" from a kernel launch, MPS ("MPS backend out of
memory"), the CPU allocator. ``is_oom_error`` recognises them by message, as
``accelerate.utils.memory.should_reduce_batch_size`` does; ``observe_exception`` records
one when memwatch sees it pass (a failing forward or backward, a ``find_batch_size``
trial, the end of the watch).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import torch

from memwatch.collect import cuda


def oom_error_class(module: Any = torch) -> type[RuntimeError]:
    """``torch.OutOfMemoryError`` where torch has it (2.5+), else
    ``torch.cuda.OutOfMemoryError`` (older torches); a private subclass of RuntimeError
    where neither exists, so that ``isinstance`` checks and the CPU budget still work."""
    found = getattr(module, "OutOfMemoryError", None)
    if found is None:
        found = getattr(getattr(module, "cuda", None), "OutOfMemoryError", None)
    if isinstance(found, type) and issubclass(found, RuntimeError):
        return found
    return type("OutOfMemoryError", (RuntimeError,), {"__module__": __name__})


OutOfMemoryError = oom_error_class()

#: Messages of out-of-memory failures raised as plain RuntimeError. The first three are
#: accelerate's ``should_reduce_batch_size`` list; the others are the same failure from
#: other places (HIP/XPU/MPS allocators, cuBLAS/cuDNN allocation statuses).
OOM_MESSAGES = (
    "CUDA out of memory.",
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED.",
    "DefaultCPUAllocator: can't allocate memory",
    "CUDA error: out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "HIP out of memory.",
    "XPU out of memory.",
    "MPS backend out of memory",
    "Out of memory. Tried to allocate",
)

_TRIED_RE = re.compile(r"[Tt]ried to allocate ([0-9.]+) ?([KMGT]i?B|bytes|B)")
_FACTORS = {
    "B": 1,
    "bytes": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}

OomCallback = Callable[[dict[str, Any]], None]

_callback: OomCallback | None = None
_original_init: Any = None
_attached_to: Any = None  # the binding our observer is attached through
_cuda_pending: dict[str, Any] = {}
_cancel_attach: Callable[[], None] | None = None


def requested_bytes_from_message(message: str) -> int | None:
    """The size in a CUDA-style 'Tried to allocate 2.00 GiB' message, if any."""
    match = _TRIED_RE.search(message)
    if match is None:
        return None
    return int(float(match.group(1)) * _FACTORS.get(match.group(2), 1))


def is_oom_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` is an out-of-memory failure: ``torch.OutOfMemoryError``, or a
    ``RuntimeError`` whose message says so (see ``OOM_MESSAGES``)."""
    if exc is None:
        return False
    if isinstance(exc, OutOfMemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    try:
        message = str(exc)
    except Exception:
        return False
    return any(text in message for text in OOM_MESSAGES)


def _observe(exc: BaseException, message: str, frame: Any, kind: str | None) -> None:
    callback = _callback
    if callback is None or getattr(exc, "_memwatch_seen", False):
        return
    try:
        exc._memwatch_seen = True  # type: ignore[attr-defined]
        info: dict[str, Any] = {"message": message[:500]}
        if kind is not None:
            info["error_type"] = kind
        requested = requested_bytes_from_message(message)
        if _cuda_pending:
            info.update(_cuda_pending)
            _cuda_pending.clear()
        if requested is not None and "requested_bytes" not in info:
            info["requested_bytes"] = requested
        info["frame"] = frame
        info["exception"] = exc  # for probes only (weakref it); the tracker pops it
        callback(info)
    except Exception:
        pass


def _observing_init(self: BaseException, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    if _callback is None or getattr(self, "_memwatch_seen", False):
        return
    _observe(self, str(args[0]) if args else "", sys._getframe(1), None)


def observe_exception(exc: BaseException) -> None:
    """Record an out-of-memory failure that is not ``OutOfMemoryError`` (those record
    themselves when created), once per exception, at the frame that raised it."""
    if _callback is None or isinstance(exc, OutOfMemoryError) or not is_oom_error(exc):
        return
    tb = exc.__traceback__
    frame = None
    while tb is not None:
        frame = tb.tb_frame
        tb = tb.tb_next
    try:
        message = str(exc)
    except Exception:
        message = ""
    _observe(exc, message, frame, type(exc).__name__)


def note_pending(details: dict[str, Any]) -> None:
    """Numbers the next OOM's observation should carry (a raiser that knows them exactly,
    like the CPU budget, calls this right before raising)."""
    if _callback is not None:
        _cuda_pending.update(details)


def _cuda_observer(device: int, alloc: int, limit: int, device_free: int) -> None:
    """The caching allocator's OOM observer; runs before the OOM error is raised, whose
    ``__init__`` then picks these numbers up.

    The arguments, from c10/cuda/CUDACachingAllocator.cpp (torch 2.13): the device, the
    size it tried to obtain (the request rounded to the allocator's block or segment
    size, as its message's "Tried to allocate" prints it), ``set_fraction ?
    allowed_memory_maximum : device_total`` (the limit the allocator enforced: the
    per-process fraction's bytes when one is set, else the device's total memory; the
    binding in torch/csrc/cuda/Module.cpp misnames it ``device_allocated``), and the
    device's free memory from ``cudaMemGetInfo``."""
    if _callback is None:
        return
    _cuda_pending.update(
        {
            "device": int(device),
            "requested_bytes": int(alloc),
            "device_limit_bytes": int(limit),
            "device_free_bytes": int(device_free),
        }
    )


def _observer_attached() -> bool:
    return _attached_to is not None and _attached_to is cuda.oom_observer_binding()


def _attach_cuda_observer() -> None:
    global _attached_to
    if _observer_attached():
        return
    # It cannot be detached: it checks _callback instead.
    _attached_to = cuda.attach_oom_observer(_cuda_observer)


def ensure_cuda_observer() -> None:
    """Attach the allocator observer if CUDA is initialised and it is not yet attached
    (for torches without the lazy-call queue ``install`` uses)."""
    if _callback is not None and not _observer_attached() and cuda.initialized():
        try:
            _attach_cuda_observer()
        except Exception:
            pass


def install(callback: OomCallback) -> None:
    """Route every OOM of this process to ``callback`` until ``uninstall()``."""
    global _callback, _original_init, _cancel_attach
    _callback = callback
    oom_type: Any = OutOfMemoryError
    if _original_init is None:
        _original_init = oom_type.__init__
        oom_type.__init__ = _observing_init
    if cuda.built() and not _observer_attached():
        try:
            # Now if the program already uses CUDA, else inside its CUDA initialisation.
            _cancel_attach = cuda.when_initialized(
                _attach_cuda_observer, "the allocator's OOM observer"
            )
        except Exception:
            pass


def uninstall() -> None:
    global _callback, _original_init, _cancel_attach
    _callback = None
    cancel, _cancel_attach = _cancel_attach, None
    if cancel is not None:
        cancel()  # the program never initialised CUDA: take our queued call back
    if _original_init is not None:
        oom_type: Any = OutOfMemoryError
        oom_type.__init__ = _original_init
        _original_init = None
