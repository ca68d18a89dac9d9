"""memwatch: a GPU memory profiler and training-loop debugger for PyTorch.

    from memwatch import memwatch
    with memwatch() as mw:
        train()
    print(mw.report())

Importing memwatch imports neither torch nor the detectors: ``memwatch``/``Watch`` load the
session on first use and the hooks are installed when a watch starts. That keeps the
pytest plugin (loaded in every pytest run where memwatch is installed) nearly free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memwatch.errors import MemwatchError, RunFileError
from memwatch.records import Event, Finding, Location, RunInfo, StepRecord

if TYPE_CHECKING:
    from memwatch.batch_size import find_batch_size
    from memwatch.session import Watch, active_watch, memwatch

__version__ = "0.1.0"

__all__ = [
    "Event",
    "Finding",
    "Location",
    "MemwatchError",
    "RunFileError",
    "RunInfo",
    "StepRecord",
    "Watch",
    "active_watch",
    "find_batch_size",
    "memwatch",
]

_LAZY = {
    "memwatch": "memwatch.session",
    "Watch": "memwatch.session",
    "active_watch": "memwatch.session",
    "find_batch_size": "memwatch.batch_size",  # imports torch
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'memwatch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
