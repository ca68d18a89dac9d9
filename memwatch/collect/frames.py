"""Finding the user's code on the stack: the frames that are neither torch, memwatch,
the standard library nor installed packages."""

from __future__ import annotations

import os
import sys
import sysconfig
from types import FrameType

from memwatch.records import Location

_MEMWATCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN_PREFIX = os.path.join(_MEMWATCH_DIR, "")  # memwatch's own source files
_NON_USER_PREFIXES: tuple[str, ...] = tuple(
    {
        _OWN_PREFIX,
        os.path.join(os.path.abspath(sysconfig.get_paths()["stdlib"]), ""),
    }
)
_NON_USER_MARKERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
_user_file_cache: dict[str, bool] = {}


def is_own_file(filename: str) -> bool:
    """Whether ``filename`` is one of memwatch's own source files."""
    return filename.startswith(_OWN_PREFIX)


def is_user_file(filename: str) -> bool:
    """Whether ``filename`` is the user's code (cached: called on hot paths)."""
    cached = _user_file_cache.get(filename)
    if cached is not None:
        return cached
    if filename.startswith("<") and not filename.startswith("<stdin"):
        result = False  # <frozen ...>, <string>, generated code
    else:
        path = os.path.abspath(filename)
        result = not path.startswith(_NON_USER_PREFIXES) and not any(
            m in path for m in _NON_USER_MARKERS
        )
    _user_file_cache[filename] = result
    return result


def user_frames(start: FrameType | None = None, limit: int = 4) -> list[FrameType]:
    """Up to ``limit`` user frames, innermost first, starting from ``start``'s caller chain."""
    frame: FrameType | None = start if start is not None else sys._getframe(1)
    found: list[FrameType] = []
    while frame is not None and len(found) < limit:
        if is_user_file(frame.f_code.co_filename):
            found.append(frame)
        frame = frame.f_back
    return found


def first_user_frame(start: FrameType | None = None) -> FrameType | None:
    frame: FrameType | None = start if start is not None else sys._getframe(1)
    while frame is not None:
        if is_user_file(frame.f_code.co_filename):
            return frame
        frame = frame.f_back
    return None


def frame_location(frame: FrameType) -> Location:
    return Location(
        file=display_path(frame.f_code.co_filename),
        line=frame.f_lineno,
        function=frame.f_code.co_name,
    )


def caller_location() -> Location | None:
    """Where the user's code is right now (None if no user frame is on the stack)."""
    frame = first_user_frame(sys._getframe(1))
    return frame_location(frame) if frame is not None else None


def display_path(filename: str) -> str:
    """A path relative to the working directory when the file lies below it."""
    try:
        rel = os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename
    return filename if rel.startswith("..") else rel
