"""Claiming a path for a new run file: memwatch never replaces a file that is not its own.

A run file is created exclusively (``O_CREAT | O_EXCL``), so two processes can never
write to one file and a file someone else put at the path (a CSV, the script itself, a
symlink) is never opened for writing. When memwatch chose the name (no ``--out``) a clash
just moves on to the next free name; when the user named the path, a clash is refused
with one line, and only an earlier memwatch run file may be replaced, with ``force``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from memwatch.errors import RunFileError
from memwatch.plaintext import plain
from memwatch.store.schema import APPLICATION_ID

#: The first 16 bytes of every SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Files SQLite keeps beside a database: a stale one would be replayed into a new file.
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")
#: How many alternative default names are tried before giving up.
MAX_ALTERNATIVES = 1000


class RunFileExistsError(RunFileError):
    """The path the user named is taken: by another file, or by a run without ``force``."""


def is_run_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file with a memwatch run file's SQLite header.

    Reads only the 100-byte header (SQLite magic, and the application id at offset 68),
    so it is safe on anything, including a file that is being written.
    """
    try:
        if not Path(path).is_file() or Path(path).is_symlink():
            return False
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError:
        return False
    if (
        len(header) == 100
        and header.startswith(SQLITE_MAGIC)
        and int.from_bytes(header[68:72], "big") == APPLICATION_ID
    ):
        return True
    # A live run in WAL mode may have its header only in the WAL so far: ask SQLite,
    # read-only, but only for what is an SQLite file (or an empty one beside a WAL).
    if header.startswith(SQLITE_MAGIC) or (not header and os.path.exists(f"{path}-wal")):
        return _application_id(Path(path)) == APPLICATION_ID
    return False


def _application_id(path: Path) -> int | None:
    import sqlite3

    from memwatch.store.reader import read_only_uri

    try:
        conn = sqlite3.connect(read_only_uri(path), uri=True)
        try:
            return int(conn.execute("PRAGMA application_id").fetchone()[0])
        finally:
            conn.close()
    except (sqlite3.Error, ValueError, TypeError):
        return None


def _taken(path: Path) -> bool:
    """Anything at the path or its SQLite companions (a stale WAL would be replayed)."""
    return any(os.path.lexists(f"{path}{suffix}") for suffix in ("", *COMPANION_SUFFIXES))


def _create_exclusively(path: Path, what: str = "run file") -> bool:
    """Create ``path`` as a new empty file; False if something is already there."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise RunFileError(
            f"cannot create the {what} {plain(path)}: {exc.strerror or exc}"
        ) from None
    os.close(fd)
    return True


def _make_parent(path: Path, what: str = "run file") -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise RunFileError(
                f"cannot create the {what} {plain(path)}: {plain(blocking)} is a file, "
                "not a directory"
            ) from None
        raise RunFileError(
            f"cannot create the {what} {plain(path)}: cannot create its directory "
            f"({exc.strerror or exc})"
        ) from None


def _refuse_if_live(path: Path) -> None:
    """A run file another process is still writing is never replaced, not even with force."""
    from memwatch.store.liveness import writer_alive
    from memwatch.store.reader import RunReader

    try:
        with RunReader(path) as reader:
            info = reader.info()
    except RunFileError:
        return
    if writer_alive(info):
        raise RunFileExistsError(
            f"{plain(path)} is being written by a live run (pid {info.pid}); choose another --out"
        )


def _replace_own_run(path: Path) -> None:
    """Remove an earlier run file of memwatch's and its SQLite companions (``force``)."""
    for suffix in (*COMPANION_SUFFIXES, ""):
        try:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        except OSError as exc:
            raise RunFileError(
                f"cannot replace the run file {plain(path)}: {exc.strerror or exc}"
            ) from None


def claim_run_path(
    path: str | os.PathLike[str],
    alternatives: Iterable[Path] | None = None,
    force: bool = False,
) -> Path:
    """Create an empty file for a new run at ``path`` and return where it was created.

    Args:
        path: the path to create.
        alternatives: names memwatch chose itself to try in turn when ``path`` is taken
            (None: the user named ``path``, and a clash is refused).
        force: a user-named ``path`` holding an earlier memwatch run file is replaced;
            any other file there is never touched.

    Raises:
        RunFileExistsError: the named path is taken.
        RunFileError: the path cannot be created (read-only directory, below a file...).
    """
    first = Path(path)
    _make_parent(first)
    if alternatives is not None:
        candidates = [first, *_bounded(alternatives)]
        for candidate in candidates:
            if not _taken(candidate) and _create_exclusively(candidate):
                return candidate
        raise RunFileError(
            f"cannot find a free run-file name near {plain(first)} ({len(candidates)} names tried)"
        )
    if not _taken(first) and _create_exclusively(first):
        return first
    if not os.path.lexists(first):
        raise RunFileExistsError(
            f"{plain(first)} has SQLite companion files beside it "
            f"({', '.join(s for s in COMPANION_SUFFIXES if os.path.lexists(f'{first}{s}'))}) "
            "from another database; memwatch does not touch them: choose another --out"
        )
    if not is_run_file(first):
        raise RunFileExistsError(
            f"{plain(first)} exists and is not a memwatch run file; memwatch never replaces "
            "it: choose another --out"
        )
    _refuse_if_live(first)
    if not force:
        raise RunFileExistsError(
            f"{plain(first)} holds an earlier memwatch run; pass --force (force=True) to "
            "replace it, or choose another --out"
        )
    _replace_own_run(first)
    if _create_exclusively(first):
        return first
    raise RunFileExistsError(f"{plain(first)} was created by another process meanwhile")


def claim_fresh_file(path: Path, what: str) -> Path:
    """Create an empty file at ``path``, else ``<stem>-2<suffix>``, ``-3``...; return it.

    For the files memwatch writes beside a run (the ``--live`` log, CUDA snapshots): a file
    already there, the user's or an earlier run's, is never opened for writing. ``what``
    names the file in the error (``RunFileError``) when none can be created.
    """
    _make_parent(path, what)
    for n in range(1, MAX_ALTERNATIVES + 1):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        if _create_exclusively(candidate, what):
            return candidate
    raise RunFileError(f"cannot find a free {what} name near {plain(path)}")


def _bounded(alternatives: Iterable[Path]) -> list[Path]:
    out = []
    for i, alt in enumerate(alternatives):
        if i >= MAX_ALTERNATIVES:
            break
        out.append(alt)
    return out


def discard_claimed(path: Path) -> None:
    """Remove a run file memwatch itself created for a run that never started."""
    for suffix in ("", *COMPANION_SUFFIXES):
        try:
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        except OSError:
            pass
