"""Reading the user's source lines that a finding points at (the dashboard's only file I/O
besides the run file and the ``--live`` log).

A run file is untrusted: a finding's location can name any path (``/etc/passwd``,
``/proc/self/environ``, a 150 MB log). So only Python source files (``.py``, a regular
file, at most ``MAX_SOURCE_BYTES``) are shown, and only the lines around the location are
read, each cut at ``MAX_LINE_CHARS``. Relative paths are resolved against the run's
working directory (``RunInfo.cwd``, recorded since schema 1.1) before anything else, so
the dashboard shows the right file whichever directory it is opened from.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Larger files are not shown (user training scripts are far smaller).
MAX_SOURCE_BYTES = 4 << 20
#: Characters kept of each shown line.
MAX_LINE_CHARS = 400


@dataclass(frozen=True, slots=True)
class Excerpt:
    """Source lines around a finding's location, or why they cannot be shown."""

    path: str
    lines: tuple[tuple[int, str], ...] = ()
    focus: int = 0
    note: str | None = None


def find_source(file: str, search_dirs: Sequence[Path]) -> Path | None:
    """The file a location names: as recorded if absolute, else the first of
    ``search_dirs / file`` that exists (the run's working directory should come first)."""
    candidate = Path(file)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for base in search_dirs:
        path = base / candidate
        if path.is_file():
            return path
    return None


def read_excerpt(
    file: str,
    line: int,
    search_dirs: Sequence[Path] = (),
    context: int = 3,
    recorded_at: float | None = None,
) -> Excerpt:
    """``context`` lines either side of ``file:line``; a note instead if it cannot be shown.

    A file modified after the run (``recorded_at``) is still shown, with a warning that
    the lines may have moved.
    """
    if Path(file).suffix != ".py":
        return Excerpt(file, note=f"not shown: {file} is not a Python source file")
    path = find_source(file, search_dirs)
    if path is None:
        return Excerpt(file, note=f"source not found on this machine: {file}")
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or path.resolve().suffix != ".py":
            return Excerpt(file, note=f"not shown: {file} is not a regular Python file")
        if info.st_size > MAX_SOURCE_BYTES:
            return Excerpt(file, note=f"not shown: {file} is larger than 4 MiB")
        lo, hi = max(1, line - context), line + context
        lines: list[tuple[int, str]] = []
        count = 0
        with open(path, encoding="utf-8", errors="replace") as handle:
            while count < hi:
                text = handle.readline(MAX_LINE_CHARS)
                if not text:
                    break
                count += 1
                if not text.endswith("\n"):  # a long line: skip the rest of it
                    rest = text
                    while rest and not rest.endswith("\n"):
                        rest = handle.readline(1 << 16)
                if count >= lo:
                    lines.append((count, text.rstrip("\r\n").rstrip()))
    except OSError as exc:
        return Excerpt(file, note=f"source not readable: {file} ({exc.strerror})")
    if not lo <= line <= count:
        return Excerpt(file, note=f"{file} has {count} lines; line {line} is gone")
    note = None
    if recorded_at is not None and info.st_mtime > recorded_at:
        note = "file changed since the run: lines may have moved"
    return Excerpt(file, tuple(lines), line, note)


def search_dirs(cwd: str | None, run_file: Path | None, script: str | None) -> list[Path]:
    """Where a relative source path may be, best first: the run's working directory, then
    near the run file and the script (a run directory copied elsewhere with its code)."""
    dirs: list[Path] = []
    if cwd:
        dirs.append(Path(cwd))
    if run_file is not None:
        dirs += [run_file.parent.parent, run_file.parent]
    if script:
        script_path = Path(script)
        if script_path.is_absolute() or cwd is None:
            dirs.append(script_path.parent)
        else:
            dirs.append(Path(cwd) / script_path.parent)
    dirs.append(Path.cwd())
    return dirs
