"""The single writer of a run file, owned by the watched process.

Rows are buffered in memory and committed in one transaction at a step boundary once
enough time or rows have gathered (probe: a commit costs ~70 µs median and spikes to
milliseconds, so a commit per step would cost a small model 10%+). A SIGKILL loses at most
the uncommitted tail; every committed step stays readable from the WAL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from memwatch.errors import RunFileError
from memwatch.evidence import EVIDENCE_VERSION
from memwatch.plaintext import plain
from memwatch.records import (
    STEP_COLUMNS,
    Event,
    Finding,
    Holder,
    Location,
    MemoryCategories,
    RunInfo,
    StepRecord,
)
from memwatch.store.claim import claim_run_path, discard_claimed
from memwatch.store.schema import APPLICATION_ID, DDL, SCHEMA_VERSION

#: The writer's SQLite page cache, KiB (64 pages of 4 KiB: the right edge of every table).
WRITER_CACHE_KIB = 256

_INSERT_STEP = (
    f"INSERT OR REPLACE INTO steps ({', '.join(STEP_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in STEP_COLUMNS)})"
)


def _loc(location: Location | None) -> str | None:
    return json.dumps(location.to_dict()) if location else None


def failure_reason(exc: BaseException) -> str:
    """Why a write failed, in words (``database or disk is full``), for notices and the file."""
    if isinstance(exc, (sqlite3.Error, OSError)) and str(exc):
        return str(exc)
    return repr(exc)


class RunWriter:
    """Appends records to one run file; commits in batches; checkpoints on close.

    The file is created exclusively (see ``memwatch.store.claim``): the writer never
    deletes or replaces anything but an earlier run file of its own, and that only with
    ``force``. ``alternatives`` are the names to try when memwatch chose the path itself.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: RunInfo,
        commit_every_s: float = 0.25,
        commit_every_rows: int = 256,
        *,
        alternatives: Iterable[Path] | None = None,
        force: bool = False,
    ) -> None:
        self.path = claim_run_path(path, alternatives, force=force)
        try:
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # Appends touch only the last pages of each table: SQLite's default 2 MB page
            # cache would fill over thousands of steps as memwatch's own growth (issue 15).
            self._conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            self._conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._conn.executescript(DDL)
        except sqlite3.Error as exc:  # a full disk at start, a filesystem without locks...
            try:
                self._conn.close()
            except Exception:
                pass
            discard_claimed(self.path)  # created above by this writer: its own
            raise RunFileError(
                f"cannot create the run file {plain(self.path)}: {failure_reason(exc)}"
            ) from None
        self._steps: list[tuple[Any, ...]] = []
        self._events: list[tuple[Any, ...]] = []
        self._holders: list[tuple[Any, ...]] = []
        self._categories: list[tuple[Any, ...]] = []
        self._findings: dict[str, tuple[Any, ...]] = {}
        self._clear_findings = False
        self._commit_every_s = commit_every_s
        self._commit_every_rows = commit_every_rows
        self._last_commit = time.monotonic()
        self.closed = False
        self.last_committed_step: int | None = None
        """The highest step the file holds (None before the first commit of a step)."""
        self._conn.execute("BEGIN")
        self._conn.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            [
                ("schema_version", SCHEMA_VERSION),
                ("evidence_version", str(EVIDENCE_VERSION)),
                ("run", json.dumps(info.to_dict())),
            ],
        )
        self._conn.execute("COMMIT")

    # -- buffering (cheap, called from hooks) ---------------------------------------------
    def add_step(self, record: StepRecord) -> None:
        self._steps.append(record.to_row())

    def add_event(self, event: Event) -> None:
        self._events.append(
            (
                event.kind,
                event.step,
                event.time,
                _loc(event.location),
                json.dumps(dict(event.data), default=str),
            )
        )

    def add_holders(self, holders: Iterable[Holder]) -> None:
        self._holders.extend(
            (h.step, h.name, h.bytes, h.tensors, _loc(h.location)) for h in holders
        )

    def add_categories(self, categories: MemoryCategories) -> None:
        c = categories
        self._categories.append(
            (
                c.step,
                c.parameters_bytes,
                c.gradients_bytes,
                c.optimizer_bytes,
                c.activations_bytes,
                c.other_bytes,
                c.total_bytes,
                c.basis,
            )
        )

    def put_finding(self, finding: Finding) -> None:
        self._findings[finding.key] = (
            finding.key,
            finding.kind,
            finding.severity,
            finding.first_step,
            time.time(),
            json.dumps(finding.to_dict(), default=str),
        )

    def clear_findings(self) -> None:
        """Forget every stored finding at the next commit (the final pass re-judges all)."""
        self._clear_findings = True
        self._findings.clear()

    @property
    def pending_rows(self) -> int:
        return (
            len(self._steps)
            + len(self._events)
            + len(self._holders)
            + len(self._categories)
            + len(self._findings)
            + int(self._clear_findings)
        )

    # -- committing (at step boundaries) ---------------------------------------------------
    def maybe_commit(self) -> bool:
        """Commit if enough rows or time have gathered; returns whether it committed."""
        pending = self.pending_rows
        if not pending:
            return False
        if (
            pending >= self._commit_every_rows
            or time.monotonic() - self._last_commit >= self._commit_every_s
            or self._findings
        ):
            self.commit()
            return True
        return False

    def commit(self) -> None:
        if self.closed or not self.pending_rows:
            return
        conn = self._conn
        conn.execute("BEGIN")
        try:
            if self._steps:
                conn.executemany(_INSERT_STEP, self._steps)
            if self._events:
                conn.executemany(
                    "INSERT INTO events(kind, step, time, location, data) VALUES (?,?,?,?,?)",
                    self._events,
                )
            if self._holders:
                conn.executemany(
                    "INSERT INTO holders(step, name, bytes, tensors, location) VALUES (?,?,?,?,?)",
                    self._holders,
                )
            if self._categories:
                conn.executemany(
                    "INSERT OR REPLACE INTO categories VALUES (?,?,?,?,?,?,?,?)", self._categories
                )
            if self._clear_findings:
                conn.execute("DELETE FROM findings")
            if self._findings:
                conn.executemany(
                    "INSERT OR REPLACE INTO findings(key, kind, severity, first_step, found_at, "
                    "data) VALUES (?,?,?,?,?,?)",
                    list(self._findings.values()),
                )
            conn.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (a full disk): rolling back again
            # would raise "no transaction is active" and hide the real cause.
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        if self._steps:
            newest = max(row[0] for row in self._steps)
            if self.last_committed_step is None or newest > self.last_committed_step:
                self.last_committed_step = newest
        self._steps.clear()
        self._events.clear()
        self._holders.clear()
        self._categories.clear()
        self._findings.clear()
        self._clear_findings = False
        self._last_commit = time.monotonic()

    def update_run(self, info: RunInfo) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('run', ?)",
            (json.dumps(info.to_dict()),),
        )

    def close(self, info: RunInfo | None = None) -> None:
        """Commit the tail, record how the run ended and fold the WAL into the file."""
        if self.closed:
            return
        self.commit()
        if info is not None:
            self.update_run(info)
        try:
            # Fold the WAL in and leave a single self-contained file: read-only readers of a
            # WAL database would otherwise re-create -wal/-shm files beside it.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.OperationalError:
            pass  # a live reader holds the WAL open; the data is committed either way
        self._conn.close()
        self.closed = True

    def close_after_failure(self, info: RunInfo | None) -> None:
        """Close after a failed write: drop what could not be written, then try (once) to
        record the end, so the file says where and why recording stopped."""
        if self.closed:
            return
        self._steps.clear()
        self._events.clear()
        self._holders.clear()
        self._findings.clear()
        self._clear_findings = False
        try:
            if info is not None:
                self.update_run(info)
        except sqlite3.Error:
            pass  # still no room: the report printed at the end says it instead
        try:
            self._conn.close()
        except sqlite3.Error:
            pass
        self.closed = True

    def abandon(self) -> sqlite3.Connection:
        """Forget the connection without closing it (in a forked child, see collect.fork).

        Closing an inherited SQLite connection in a child could checkpoint or delete the
        parent's WAL; the caller keeps the returned object alive so it is never finalised.
        """
        self.closed = True
        return self._conn
