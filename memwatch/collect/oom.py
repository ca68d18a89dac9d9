"""Observing out-of-memory errors wherever they come from, handled or not.

``torch.OutOfMemoryError`` (the same class as ``torch.cuda.OutOfMemoryError``) is a heap
type, and its ``__init__`` runs for raises from Python and from C alike (on 3.11 C-raised
exceptions are instantiated lazily when caught, which still calls it). Patching it costs
nothing while no OOM happens. On CUDA builds the allocator's OOM observer adds the sizes
the allocator knew at the time.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import torch

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
_cuda_observer_attached = False
_cuda_pending: dict[str, Any] = {}


def requested_bytes_from_message(message: str) -> int | None:
    """The size in a CUDA-style 'Tried to allocate 2.00 GiB' message, if any."""
    match = _TRIED_RE.search(message)
    if match is None:
        return None
    return int(float(match.group(1)) * _FACTORS.get(match.group(2), 1))


def _observing_init(self: BaseException, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    callback = _callback
    if callback is None or getattr(self, "_memwatch_seen", False):
        return
    try:
        self._memwatch_seen = True  # type: ignore[attr-defined]
        message = str(args[0]) if args else ""
        info: dict[str, Any] = {"message": message[:500]}
        requested = requested_bytes_from_message(message)
        if _cuda_pending:
            info.update(_cuda_pending)
            _cuda_pending.clear()
        if requested is not None and "requested_bytes" not in info:
            info["requested_bytes"] = requested
        info["frame"] = sys._getframe(1)
        info["exception"] = self  # for probes only (weakref it); the tracker pops it
        callback(info)
    except Exception:
        pass


def note_pending(details: dict[str, Any]) -> None:
    """Numbers the next OOM's observation should carry (a raiser that knows them exactly,
    like the CPU budget, calls this right before raising)."""
    if _callback is not None:
        _cuda_pending.update(details)


def _cuda_observer(device: int, alloc: int, device_alloc: int, device_free: int) -> None:
    # Runs before the OOM error is raised; the error's __init__ picks these numbers up.
    if _callback is None:
        return
    _cuda_pending.update(
        {
            "device": int(device),
            "requested_bytes": int(alloc),
            "device_allocated_bytes": int(device_alloc),
            "device_free_bytes": int(device_free),
        }
    )


def install(callback: OomCallback) -> None:
    """Route every OOM of this process to ``callback`` until ``uninstall()``."""
    global _callback, _original_init, _cuda_observer_attached
    _callback = callback
    oom_type: Any = torch.OutOfMemoryError
    if _original_init is None:
        _original_init = oom_type.__init__
        oom_type.__init__ = _observing_init
    attach = getattr(torch._C, "_cuda_attach_out_of_memory_observer", None)
    if attach is not None and not _cuda_observer_attached:
        try:
            if torch.cuda.is_available():
                attach(_cuda_observer)  # cannot be detached: it checks _callback instead
                _cuda_observer_attached = True
        except Exception:
            pass


def uninstall() -> None:
    global _callback, _original_init
    _callback = None
    if _original_init is not None:
        oom_type: Any = torch.OutOfMemoryError
        oom_type.__init__ = _original_init
        _original_init = None
