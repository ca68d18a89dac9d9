"""Where run files live: ``memwatch-runs/<script>-<time>.db`` unless told otherwise.

Under torchrun every rank writes its own file, and all files of one launch share a run
directory, so that ``memwatch report DIR`` sees the whole run:
``memwatch-runs/<script>-<time>/<script>-<time>-rank<N>.db`` by default, or
``DIR/<script>-rank<N>.db`` with ``--out DIR``.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from memwatch.errors import RunFileError

RUNS_DIR = "memwatch-runs"


def run_stem(script: str) -> str:
    """The name a run file is filed under: the script's name without ``.py``.

    A module run (``-m pkg.sub.mod``) keeps its whole dotted name, so its file is named
    after the module rather than after its package (``Path.stem`` would cut at the dot).
    """
    name = Path(script).name
    for suffix in (".py", ".pyw", ".pyz"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name or "run"


def default_run_names(
    script: str, rank: int | None = None, directory: str | os.PathLike[str] | None = None
) -> Iterator[Path]:
    """Fresh run-file names for ``script``: ``<stem>-<time>.db``, then ``-2``, ``-3``...

    The writer creates the first one that is free, exclusively, so runs started in the same
    second (eight at once from a job array) each get their own file.
    """
    stem = run_stem(script)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    suffix = f"-rank{rank}" if rank is not None else ""
    base = Path(directory) if directory is not None else Path(RUNS_DIR)
    yield base / f"{stem}-{stamp}{suffix}.db"
    for n in itertools.count(2):
        yield base / f"{stem}-{stamp}-{n}{suffix}.db"


def default_run_path(
    script: str, rank: int | None = None, directory: str | os.PathLike[str] | None = None
) -> Path:
    """The first free default name (a hint: only the writer's exclusive create is final)."""
    from memwatch.store.claim import _taken

    for path in default_run_names(script, rank, directory):
        if not _taken(path):
            return path
    raise AssertionError("unreachable")  # default_run_names never ends


#: ``-rank<N>`` (and ``-restart<K>`` after a torchelastic restart) at the end of a file stem.
RANK_STEM_RE = re.compile(r"-rank(\d+)(?:-restart(\d+))?$")


def run_file_path(out: str | os.PathLike[str] | None, script: str, rank: int | None = None) -> Path:
    """Where this process records its run (the first choice of :func:`run_file_plan`)."""
    return run_file_plan(out, script, rank)[0]


def run_file_plan(
    out: str | os.PathLike[str] | None, script: str, rank: int | None = None
) -> tuple[Path, Iterator[Path] | None]:
    """Where this process records its run, given ``--out``/``out=`` and its rank (or None).

    A single process writes to ``out`` as given (an existing directory, or a path ending in
    a separator, gets a fresh default name inside it), else to a fresh default path.

    A rank (RANK set, as under torchrun) never shares a file with another rank, and all
    ranks of one launch land in one directory, without talking to each other:

    * ``out`` None: ``memwatch-runs/<stem>-<stamp>/<stem>-<stamp>-rank<N>.db``, where the
      stamp is the launcher's start time, identical on every rank of a node;
    * ``out`` a directory (existing, or any path without a ``.db`` suffix):
      ``out/<stem>-rank<N>.db``;
    * ``out`` a file ``x.db`` (or any existing file): ``x-rank<N>.db`` beside it.

    After a torchelastic restart the name gains ``-restart<K>`` so that the failed
    attempt's files are kept; the views read the newest file of each rank.

    Returns the path and, when memwatch chose the name itself, the alternatives to try
    if it is taken; a name the user gave (and a rank's name, which all ranks of a launch
    must agree on) has none: a clash there is refused, never overwritten.
    """
    stem = run_stem(script)
    if rank is None:
        if out is None:
            names = default_run_names(script)
            return next(names), names
        if Path(out).is_dir() or str(out).endswith(("/", os.sep)):
            names = default_run_names(script, directory=out)
            return next(names), names
        return Path(out), None
    tag = f"-rank{rank}{_restart_suffix()}"
    if out is None:
        name = f"{stem}-{shared_run_stamp()}"
        return Path(RUNS_DIR) / name / f"{name}{tag}.db", None
    path = Path(out)
    if path.is_dir() or (path.suffix != ".db" and not path.exists()):
        return path / f"{stem}{tag}.db", None
    return path.with_name(f"{path.stem}{tag}.db"), None


def _restart_suffix() -> str:
    try:
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        restarts = 0
    return f"-restart{restarts}" if restarts > 0 else ""


def shared_run_stamp() -> str:
    """``YYYYmmdd-HHMMSS`` that every rank of one torchrun launch on a node computes alike.

    torchrun's workers are children of its agent, so the agent's start time names the
    launch without any communication between ranks (memwatch adds none). Outside
    torchelastic (or if the parent cannot be inspected) it is the current time; other
    launchers should pass ``--out DIR``.
    """
    when: float | None = None
    if "TORCHELASTIC_RUN_ID" in os.environ:
        try:
            import psutil

            when = psutil.Process(os.getppid()).create_time()
        except Exception:
            when = None
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(when))


def rank_of_file(path: Path) -> tuple[int, int] | None:
    """(rank, restart) encoded in a rank file's name, or None for a single-process run."""
    match = RANK_STEM_RE.search(path.stem)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


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
        newest = newest_run(base) if base.is_dir() else None
        if newest is None:
            raise RunFileError(
                f"no run given and no run files in ./{RUNS_DIR}; record one with "
                "`memwatch run SCRIPT` or pass a path"
            )
        return newest
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
    return path.is_dir() and any(rank_of_file(p) is not None for p in path.glob("*.db"))


def newest_run(base: Path) -> Path | None:
    """The newest run in ``base``: a run file, or a rank directory (by its newest file)."""
    candidates: list[tuple[float, str, Path]] = [
        (p.stat().st_mtime, p.name, p) for p in find_run_files(base)
    ]
    for sub in base.iterdir():
        if is_rank_directory(sub):
            newest = find_run_files(sub)[-1]
            candidates.append((newest.stat().st_mtime, newest.name, sub))
    return max(candidates)[2] if candidates else None
