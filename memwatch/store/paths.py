"""Where run files live: ``memwatch-runs/<script>-<time>[-rank<N>].db`` unless told otherwise."""

from __future__ import annotations

import os
import time
from pathlib import Path

from memwatch.errors import RunFileError

RUNS_DIR = "memwatch-runs"


def default_run_path(
    script: str, rank: int | None = None, directory: str | os.PathLike[str] | None = None
) -> Path:
    """A fresh run-file path for ``script`` in ``directory`` (default ``./memwatch-runs``)."""
    stem = Path(script).stem or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = f"-rank{rank}" if rank is not None else ""
    base = Path(directory) if directory is not None else Path(RUNS_DIR)
    path = base / f"{stem}-{stamp}{suffix}.db"
    n = 1
    while path.exists():  # two runs in the same second must not overwrite each other
        n += 1
        path = base / f"{stem}-{stamp}-{n}{suffix}.db"
    return path


def find_run_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The run files in ``directory``, oldest first (by modification time)."""
    base = Path(directory)
    files = [p for p in base.glob("*.db") if p.is_file()]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def resolve_run(run: str | os.PathLike[str] | None) -> Path:
    """Turn the RUN argument of ``report``/``tui``/``check`` into a path.

    None means the newest run in ``./memwatch-runs``. A directory holding rank files is
    returned as is (multi-rank views read all of them); a directory of separate runs gives
    its newest run.
    """
    if run is None:
        base = Path(RUNS_DIR)
        files = find_run_files(base) if base.is_dir() else []
        if not files:
            raise RunFileError(
                f"no run given and no run files in ./{RUNS_DIR}; record one with "
                "`memwatch run SCRIPT` or pass a path"
            )
        return files[-1]
    path = Path(run)
    if path.is_dir():
        files = find_run_files(path)
        if not files:
            raise RunFileError(f"no run files in directory {path}")
        if is_rank_directory(path):
            return path
        return files[-1]
    if not path.exists():
        raise RunFileError(f"no run file at {path}")
    return path


def is_rank_directory(path: Path) -> bool:
    """A directory whose run files carry ``-rank<N>`` suffixes: one run of several ranks."""
    return path.is_dir() and any("-rank" in p.stem for p in path.glob("*.db"))
