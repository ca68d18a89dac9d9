"""What the dashboard reads: a small interface over a run file, and a fake for tests.

The dashboard never holds a whole run in memory: a run of a million steps is summarised
by SQLite (min/max per block of steps, see ``tui.index``) and only the visible window is
fetched. ``RunFeed`` is the narrow set of queries the dashboard needs; ``FileFeed``
answers them from a run file opened read-only (so it costs the training process nothing),
``FakeFeed`` from lists in memory, so widget tests need no file and no threads racing a
writer.

``RunReader`` (``memwatch.store``) validates the file and reads runs, findings and
holders; the down-sampling queries it lacks are run here on a second ``mode=ro``
connection.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from memwatch.errors import RunFileError
from memwatch.records import STEP_COLUMNS, Finding, Holder, RunInfo, StepRecord
from memwatch.store import RunReader, resolve_run
from memwatch.store.paths import find_run_files, is_rank_directory, rank_of_file

#: The per-step series the timeline draws, in drawing order (``StepRecord`` field names).
SERIES_COLUMNS: tuple[str, ...] = (
    "reserved_bytes",
    "allocated_bytes",
    "peak_allocated_bytes",
    "saved_bytes",
    "rss_bytes",
)

Values = tuple[int | None, ...]


@dataclass(frozen=True, slots=True)
class Block:
    """Min and max of every series over the steps ``start <= step < stop``.

    ``count`` is how many steps were recorded in the range (0 for a gap); ``lows`` and
    ``highs`` follow ``SERIES_COLUMNS`` and hold None where a series was never measured.
    Keeping both extremes is what lets a one-step spike survive down-sampling.
    """

    start: int
    stop: int
    count: int
    lows: Values
    highs: Values


def merge_blocks(blocks: Sequence[Block]) -> Block:
    """One block covering ``blocks`` (consecutive, at least one)."""
    width = len(blocks[0].lows)
    lows: list[int | None] = [None] * width
    highs: list[int | None] = [None] * width
    count = 0
    for block in blocks:
        count += block.count
        for i in range(width):
            lo, hi = block.lows[i], block.highs[i]
            if lo is not None:
                cur = lows[i]
                lows[i] = lo if cur is None or lo < cur else cur
            if hi is not None:
                cur = highs[i]
                highs[i] = hi if cur is None or hi > cur else cur
    return Block(blocks[0].start, blocks[-1].stop, count, tuple(lows), tuple(highs))


@dataclass(frozen=True, slots=True)
class Bounds:
    """The first and last committed step, and ``version``: changes whenever data does."""

    first: int | None
    last: int | None
    version: int


#: Blocks of at most this many steps are grouped in Python from the raw rows.
SMALL_BLOCK = 32


def group_rows(rows: Sequence[tuple[Any, ...]], start: int, stop: int, size: int) -> list[Block]:
    """Blocks of ``size`` steps from ``(step, *values)`` rows sorted by step."""
    width = len(SERIES_COLUMNS)
    out: list[Block] = []
    i = 0
    for lo in range(start, stop, size):
        hi = min(lo + size, stop)
        lows: list[int | None] = [None] * width
        highs: list[int | None] = [None] * width
        count = 0
        while i < len(rows) and rows[i][0] < hi:
            row = rows[i]
            i += 1
            if row[0] < lo:
                continue
            count += 1
            for k in range(width):
                v = row[k + 1]
                if v is None:
                    continue
                low, high = lows[k], highs[k]
                if low is None or v < low:
                    lows[k] = v
                if high is None or v > high:
                    highs[k] = v
        out.append(Block(lo, hi, count, tuple(lows), tuple(highs)))
    return out


class RunFeed(Protocol):
    """The queries the dashboard makes; every call reads what is committed right now."""

    @property
    def label(self) -> str:
        """What to call the run in the header (its file path)."""
        ...

    def info(self) -> RunInfo: ...

    def bounds(self) -> Bounds: ...

    def block_stats(self, start: int, stop: int, size: int) -> list[Block]:
        """Blocks ``[start + k*size, start + (k+1)*size)`` covering ``[start, stop)``.

        The last block is cut at ``stop``; empty ranges give blocks with ``count == 0``.
        """
        ...

    def sample(self, steps: Sequence[int]) -> list[tuple[int, Values]]:
        """For each wanted step, the first recorded step at or after it, and its values."""
        ...

    def step_at(self, step: int) -> StepRecord | None:
        """The last recorded step at or before ``step``."""
        ...

    def holders_at(self, step: int) -> list[Holder]: ...

    def findings(self) -> list[Finding]: ...

    def findings_version(self) -> tuple[int, float]:
        """Changes when findings are added or replaced (cheap; avoids re-parsing them)."""
        ...

    def close(self) -> None: ...


# -- the run file ------------------------------------------------------------------------

_COLS = ", ".join(SERIES_COLUMNS)
_BLOCK_SQL = (
    "SELECT COUNT(*), "
    + ", ".join(f"MIN({c}), MAX({c})" for c in SERIES_COLUMNS)
    + " FROM steps WHERE step >= ? AND step < ?"
)
_SAMPLE_SQL = f"SELECT step, {_COLS} FROM steps WHERE step >= ? ORDER BY step LIMIT 1"
_RANGE_SQL = f"SELECT step, {_COLS} FROM steps WHERE step >= ? AND step < ? ORDER BY step"
_STEP_AT_SQL = (
    f"SELECT {', '.join(STEP_COLUMNS)} FROM steps WHERE step <= ? ORDER BY step DESC LIMIT 1"
)


class FileFeed:
    """A run file opened read-only; raises ``RunFileError`` for missing/corrupt/foreign files.

    Not thread-safe on its own: ``tui.model.RunModel`` serialises calls with a lock.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._reader = RunReader(self.path)  # validates application id and schema version
        try:
            self._conn = sqlite3.connect(
                f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False
            )
        except sqlite3.DatabaseError as exc:  # pragma: no cover - RunReader opened it just now
            raise RunFileError(f"{self.path} could not be read ({exc})") from None

    @property
    def label(self) -> str:
        return str(self.path)

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise RunFileError(f"{self.path} could not be read ({exc})") from None

    def info(self) -> RunInfo:
        return self._reader.info()

    def bounds(self) -> Bounds:
        # Two single-ended queries: SQLite answers each from the primary key in O(1),
        # whereas ``SELECT MIN(step), MAX(step)`` scans the table.
        first = self._rows("SELECT step FROM steps ORDER BY step LIMIT 1")
        last = self._rows("SELECT step FROM steps ORDER BY step DESC LIMIT 1")
        version = self._rows("PRAGMA data_version")[0][0]
        return Bounds(
            int(first[0][0]) if first else None,
            int(last[0][0]) if last else None,
            int(version),
        )

    def block_stats(self, start: int, stop: int, size: int) -> list[Block]:
        # Small blocks: one query for the rows, grouped here (a query costs ~50 µs, a row
        # ~1 µs in Python). Large blocks: one range query per block walks the primary key
        # in order; a single GROUP BY over ``step / size`` measured 2x slower (SQLite sorts
        # it through a temp b-tree).
        if size <= SMALL_BLOCK:
            rows = self._rows(_RANGE_SQL, (start, stop))
            return group_rows(rows, start, stop, size)
        cursor = self._conn.cursor()
        width = len(SERIES_COLUMNS)
        out: list[Block] = []
        try:
            for lo in range(start, stop, size):
                hi = min(lo + size, stop)
                row = cursor.execute(_BLOCK_SQL, (lo, hi)).fetchone()
                out.append(
                    Block(
                        lo,
                        hi,
                        int(row[0]),
                        tuple(row[1 + 2 * i] for i in range(width)),
                        tuple(row[2 + 2 * i] for i in range(width)),
                    )
                )
        except sqlite3.DatabaseError as exc:
            raise RunFileError(f"{self.path} could not be read ({exc})") from None
        return out

    def sample(self, steps: Sequence[int]) -> list[tuple[int, Values]]:
        cursor = self._conn.cursor()
        out: list[tuple[int, Values]] = []
        seen: set[int] = set()
        try:
            for want in steps:
                row = cursor.execute(_SAMPLE_SQL, (want,)).fetchone()
                if row is not None and row[0] not in seen:
                    seen.add(row[0])
                    out.append((int(row[0]), tuple(row[1:])))
        except sqlite3.DatabaseError as exc:
            raise RunFileError(f"{self.path} could not be read ({exc})") from None
        return out

    def step_at(self, step: int) -> StepRecord | None:
        rows = self._rows(_STEP_AT_SQL, (step,))
        return StepRecord(*rows[0]) if rows else None

    def holders_at(self, step: int) -> list[Holder]:
        return self._reader.holders_at(step)

    def findings(self) -> list[Finding]:
        return self._reader.findings()

    def findings_version(self) -> tuple[int, float]:
        count, latest = self._rows("SELECT COUNT(*), MAX(found_at) FROM findings")[0]
        return int(count), float(latest or 0.0)

    def close(self) -> None:
        self._conn.close()
        self._reader.close()


def run_files(path: Path) -> list[Path]:
    """The files to offer for ``path``: one run file, or each rank of a rank directory.

    Ranks come lowest first, so the dashboard opens rank 0 (multi-rank merging is a later
    issue; for now ``r`` switches rank by rank). After a torchelastic restart a rank has
    several files (``-rank<N>-restart<K>``); the newest attempt is shown.
    """
    if path.is_dir() and is_rank_directory(path):
        newest: dict[int, tuple[int, Path]] = {}
        for file in find_run_files(path):
            found = rank_of_file(file)
            if found is None:
                continue
            rank, restart = found
            if rank not in newest or restart >= newest[rank][0]:
                newest[rank] = (restart, file)
        return [newest[rank][1] for rank in sorted(newest)]
    return [resolve_run(path)]


# -- the fake ----------------------------------------------------------------------------


def record_values(record: StepRecord) -> Values:
    """A step's values in ``SERIES_COLUMNS`` order."""
    return tuple(getattr(record, c) for c in SERIES_COLUMNS)


class FakeFeed:
    """A run held in memory, for tests: ``append`` and ``set_info`` mimic a live writer."""

    def __init__(
        self,
        info: RunInfo,
        steps: Sequence[StepRecord] = (),
        holders: Sequence[Holder] = (),
        findings: Sequence[Finding] = (),
        label: str = "fake.db",
    ) -> None:
        self._info = info
        self._steps: dict[int, StepRecord] = {s.step: s for s in steps}
        self._holders = list(holders)
        self._findings = list(findings)
        self._label = label
        self._version = 0
        self.calls: list[str] = []  # which queries ran, so tests can check what is cached

    @property
    def label(self) -> str:
        return self._label

    def append(
        self,
        steps: Sequence[StepRecord] = (),
        holders: Sequence[Holder] = (),
        findings: Sequence[Finding] = (),
    ) -> None:
        self._steps.update((s.step, s) for s in steps)
        self._holders.extend(holders)
        self._findings.extend(findings)
        self._version += 1

    def set_info(self, info: RunInfo) -> None:
        self._info = info
        self._version += 1

    def info(self) -> RunInfo:
        self.calls.append("info")
        return self._info

    def bounds(self) -> Bounds:
        self.calls.append("bounds")
        if not self._steps:
            return Bounds(None, None, -1)
        return Bounds(min(self._steps), max(self._steps), self._version)

    def block_stats(self, start: int, stop: int, size: int) -> list[Block]:
        self.calls.append("block_stats")
        keys = [k for k in sorted(self._steps) if start <= k < stop]
        rows = [(k, *record_values(self._steps[k])) for k in keys]
        return group_rows(rows, start, stop, size)

    def sample(self, steps: Sequence[int]) -> list[tuple[int, Values]]:
        self.calls.append("sample")
        keys = sorted(self._steps)
        out: list[tuple[int, Values]] = []
        for want in steps:
            found = next((k for k in keys if k >= want), None)
            if found is not None and (not out or out[-1][0] != found):
                out.append((found, record_values(self._steps[found])))
        return out

    def step_at(self, step: int) -> StepRecord | None:
        self.calls.append("step_at")
        keys = [k for k in self._steps if k <= step]
        return self._steps[max(keys)] if keys else None

    def holders_at(self, step: int) -> list[Holder]:
        self.calls.append("holders_at")
        snaps = [h.step for h in self._holders if h.step <= step]
        if not snaps:
            return []
        at = max(snaps)
        return sorted((h for h in self._holders if h.step == at), key=lambda h: -h.bytes)

    def findings(self) -> list[Finding]:
        self.calls.append("findings")
        return list(self._findings)

    def findings_version(self) -> tuple[int, float]:
        return len(self._findings), float(self._version)

    def close(self) -> None:
        self.calls.append("close")


def sample_points(first: int, last: int, count: int) -> list[int]:
    """``count`` evenly spaced steps from ``first`` to ``last`` inclusive (a quick preview)."""
    if last <= first or count <= 1:
        return [first]
    stride = max(1, math.ceil((last - first) / (count - 1)))
    points = list(range(first, last + 1, stride))
    if points[-1] != last:
        points.append(last)
    return points
