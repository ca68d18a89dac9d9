"""Read-only access to a run file, safe while the watched process is still writing it."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from memwatch.errors import RunFileError
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
from memwatch.store.schema import APPLICATION_ID, SCHEMA_MAJOR


def _loc(text: str | None) -> Location | None:
    return Location.from_dict(json.loads(text)) if text else None


class RunReader:
    """Opens ``path`` with ``mode=ro`` and checks it is a memwatch run of a known schema.

    Every query reads what has been committed so far, so calling ``steps(after=n)`` again
    returns what the writer added since: that is how ``--follow`` tails a live run.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RunFileError(f"no run file at {self.path}")
        try:
            self._conn = sqlite3.connect(
                f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False
            )
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            rows = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise RunFileError(f"{self.path} is not a memwatch run file ({exc})") from None
        if app_id != APPLICATION_ID or "schema_version" not in rows:
            raise RunFileError(f"{self.path} is not a memwatch run file")
        version = str(rows["schema_version"])
        try:
            major = int(version.split(".")[0])
        except ValueError:
            raise RunFileError(
                f"{self.path} has an unreadable schema version {version!r}"
            ) from None
        if major != SCHEMA_MAJOR:
            raise RunFileError(
                f"{self.path} uses run-file schema {version}; this memwatch reads "
                f"{SCHEMA_MAJOR}.x (upgrade memwatch to read it)"
            )
        self.schema_version = version

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise RunFileError(f"{self.path} could not be read ({exc})") from None

    # -- the run -------------------------------------------------------------------------
    def info(self) -> RunInfo:
        rows = self._query("SELECT value FROM meta WHERE key = 'run'")
        if not rows:
            raise RunFileError(f"{self.path} has no run description")
        return RunInfo.from_dict(json.loads(rows[0][0]))

    # -- steps ---------------------------------------------------------------------------
    def step_count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM steps")[0][0])

    def last_step(self) -> int | None:
        row = self._query("SELECT MAX(step) FROM steps")[0][0]
        return None if row is None else int(row)

    def steps(self, after: int = -1, limit: int | None = None) -> list[StepRecord]:
        """Steps with index > ``after``, in order (``limit`` caps how many)."""
        sql = f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE step > ? ORDER BY step"
        args: tuple[Any, ...] = (after,)
        if limit is not None:
            sql += " LIMIT ?"
            args = (after, limit)
        return [StepRecord(*row) for row in self._query(sql, args)]

    def step_columns(self, columns: tuple[str, ...], after: int = -1) -> list[tuple[Any, ...]]:
        """Chosen columns of every step after ``after``: cheaper than whole records for charts."""
        bad = [c for c in columns if c not in STEP_COLUMNS]
        if bad:
            raise ValueError(f"unknown step columns {bad}")
        sql = f"SELECT {', '.join(columns)} FROM steps WHERE step > ? ORDER BY step"
        return self._query(sql, (after,))

    # -- events, holders, findings --------------------------------------------------------
    def events(self, kind: str | None = None, after_id: int = 0) -> list[Event]:
        return [e for _, e in self.events_with_ids(kind, after_id)]

    def events_with_ids(
        self, kind: str | None = None, after_id: int = 0
    ) -> list[tuple[int, Event]]:
        sql = "SELECT id, kind, step, time, location, data FROM events WHERE id > ?"
        args: tuple[Any, ...] = (after_id,)
        if kind is not None:
            sql += " AND kind = ?"
            args = (after_id, kind)
        rows = self._query(sql + " ORDER BY id", args)
        return [
            (int(i), Event(k, int(s), float(t), json.loads(d), _loc(loc)))
            for i, k, s, t, loc, d in rows
        ]

    def holders_at(self, step: int) -> list[Holder]:
        """The latest holder snapshot taken at or before ``step`` (largest first)."""
        row = self._query("SELECT MAX(step) FROM holders WHERE step <= ?", (step,))[0][0]
        if row is None:
            return []
        rows = self._query(
            "SELECT step, name, bytes, tensors, location FROM holders WHERE step = ? "
            "ORDER BY bytes DESC",
            (row,),
        )
        return [Holder(int(s), n, int(b), int(t), _loc(loc)) for s, n, b, t, loc in rows]

    def categories(self, after: int = -1) -> list[MemoryCategories]:
        """Memory by category per step (schema 1.1; none in older files or when the run
        recorded none)."""
        exists = self._query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'categories'"
        )
        if not exists:
            return []
        rows = self._query(
            "SELECT step, parameters_bytes, gradients_bytes, optimizer_bytes, "
            "activations_bytes, other_bytes, total_bytes, basis FROM categories "
            "WHERE step > ? ORDER BY step",
            (after,),
        )
        return [MemoryCategories(*row) for row in rows]

    def findings(self) -> list[Finding]:
        rows = self._query("SELECT data FROM findings ORDER BY found_at")
        return [Finding.from_dict(json.loads(d)) for (d,) in rows]
