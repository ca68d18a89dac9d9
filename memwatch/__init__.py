"""memwatch: a GPU memory profiler and training-loop debugger for PyTorch.

    from memwatch import memwatch
    with memwatch() as mw:
        train()
    print(mw.report())

Importing memwatch does not import torch; the hooks are installed when a watch starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memwatch.errors import MemwatchError, RunFileError
from memwatch.records import Event, Finding, Location, RunInfo, StepRecord
from memwatch.session import Watch, active_watch, memwatch

if TYPE_CHECKING:
    from memwatch.batch_size import find_batch_size

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


def __getattr__(name: str) -> Any:
    if name == "find_batch_size":  # imports torch, so only on use
        from memwatch.batch_size import find_batch_size

        return find_batch_size
    raise AttributeError(f"module 'memwatch' has no attribute {name!r}")
