"""What the dashboard reads: a small interface over a run file, and a fake for tests.

The dashboard never holds a whole run in memory: a run of a million steps is summarised
as min/max per block of steps (see ``tui.index``) and only the visible window is
fetched. ``RunFeed`` is the narrow set of reads the dashboard makes; ``FileFeed`` answers
them from a run file through ``memwatch.store.RunReader`` (which owns every query and opens
the file read-only, so following a run costs the training process nothing), ``FakeFeed``
from lists in memory, so widget tests need no file and no threads racing a writer.

A run file is untrusted data: the store (``memwatch/store/validate.py``) checks every record
it hands out, and ``FileFeed`` checks the raw series rows it groups itself; a bad value is
``RunFileError`` (one ``memwatch: ...`` line, exit 2), never a traceback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from memwatch.errors import RunFileError
from memwatch.records import Finding, Holder, MemoryCategories, RunInfo, StepRecord
from memwatch.store import RunReader, resolve_run
from memwatch.store.paths import find_run_files, is_rank_directory, rank_of_file

#: The per-step series the timeline draws, in drawing order (``StepRecord`` field names).
SERIES_COLUMNS: tuple[str, ...] = (
    "reserved_bytes",
    "allocated_bytes",
    "peak_allocated_bytes",
    "saved_peak_bytes",
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

    def holders_near(self, step: int) -> list[Holder]:
        """The holder snapshot nearest ``step`` (before or after; the earlier on a tie),
        largest first; each ``Holder.step`` says which snapshot it is."""
        ...

    def categories(self, lo: int, hi: int, points: int) -> list[MemoryCategories]:
        """Memory by category over steps ``lo..hi``: the recorded rows (strided), led by the
        last one before ``lo``; in a window with more than ``points`` rows, the last row of
        each of about ``points`` buckets (the value held at the bucket's end). Empty for a
        run without categories."""
        ...

    def findings(self) -> list[Finding]: ...

    def findings_version(self) -> tuple[int, float]:
        """Changes when findings are added or replaced (cheap; avoids re-parsing them)."""
        ...

    def close(self) -> None: ...


# -- the run file ------------------------------------------------------------------------

T = TypeVar("T")

#: What a bad value in a run file raises while being turned into records.
_BAD_VALUE = (ValueError, TypeError, KeyError, AttributeError, OverflowError, IndexError)


class FileFeed:
    """A run file read through ``RunReader``; raises ``RunFileError`` for missing, corrupt,
    foreign or badly-valued files.

    Not thread-safe on its own: ``tui.model.RunModel`` serialises calls with a lock.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._reader = RunReader(self.path)  # validates application id and schema version

    @property
    def label(self) -> str:
        return str(self.path)

    def _checked(self, read: Callable[[], T], check: Callable[[T], object] = bool) -> T:
        """``read()``, with a bad value in the file turned into one ``RunFileError``."""
        try:
            value = read()
            check(value)
        except _BAD_VALUE as exc:
            raise RunFileError(
                f"{self.path} holds a bad value ({type(exc).__name__}: {exc})"
            ) from None
        return value

    def info(self) -> RunInfo:
        return self._reader.info()  # the store checks every value (memwatch/store/validate.py)

    def bounds(self) -> Bounds:
        first, last = self._reader.step_bounds()
        return Bounds(first, last, self._reader.data_version())

    def block_stats(self, start: int, stop: int, size: int) -> list[Block]:
        # Small blocks: one query for the rows, grouped here (a query costs ~50 µs, a row
        # ~1 µs in Python). Large blocks: one range query per block (see the reader).
        if size <= SMALL_BLOCK:
            rows = self._reader.series_rows(SERIES_COLUMNS, start, stop)
            return self._checked(lambda: group_rows(_whole_numbers(rows), start, stop, size))
        width = len(SERIES_COLUMNS)
        found = self._reader.series_blocks(SERIES_COLUMNS, start, stop, size)

        def blocks() -> list[Block]:
            out = []
            for lo, row in zip(range(start, stop, size), found):
                lows = tuple(_size(row[1 + 2 * i]) for i in range(width))
                highs = tuple(_size(row[2 + 2 * i]) for i in range(width))
                out.append(Block(lo, min(lo + size, stop), int(row[0]), lows, highs))
            return out

        return self._checked(blocks)

    def sample(self, steps: Sequence[int]) -> list[tuple[int, Values]]:
        rows = self._reader.series_sample(SERIES_COLUMNS, steps)
        return self._checked(
            lambda: [(int(row[0]), tuple(_size(v) for v in row[1:])) for row in rows]
        )

    def step_at(self, step: int) -> StepRecord | None:
        return self._reader.step_at_or_before(step)

    def holders_near(self, step: int) -> list[Holder]:
        before, after = self._reader.holder_steps_near(step)
        chosen = nearest(step, before, after)
        if chosen is None:
            return []
        return self._reader.holders_at(chosen)

    def categories(self, lo: int, hi: int, points: int) -> list[MemoryCategories]:
        rows = self._reader.categories_window(lo, hi, points)
        if len(rows) > points:
            held = [r for r in rows[:1] if r.step < lo]
            rows = held + self._reader.categories_buckets(lo, hi, _bucket(lo, hi, points))
        return rows

    def findings(self) -> list[Finding]:
        return self._reader.findings()

    def findings_version(self) -> tuple[int, float]:
        return self._reader.findings_version()

    def close(self) -> None:
        self._reader.close()


def _bucket(lo: int, hi: int, points: int) -> int:
    """Steps per bucket when a window's category rows are thinned to about ``points``."""
    return math.ceil((hi - lo + 1) / max(1, points - 1))


def nearest(step: int, before: int | None, after: int | None) -> int | None:
    """The snapshot step nearest ``step``: ``before`` (at or before it) wins a tie."""
    if before is None or after is None:
        return before if after is None else after
    return before if step - before <= after - step else after


# -- checking values read from a file ------------------------------------------------------


def _size(value: Any) -> int | None:
    """A byte count as stored: an int (never a bool, string or float), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number of bytes, found {value!r:.40}")
    return value


def _whole_numbers(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` unchanged, once every value is checked to be an int or None (a tight loop:
    a zoomed window reads thousands of rows)."""
    for row in rows:
        for value in row:
            if value is not None and type(value) is not int:
                raise TypeError(f"expected a whole number of bytes, found {value!r:.40}")
    return rows


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
        categories: Sequence[MemoryCategories] = (),
    ) -> None:
        self._categories = sorted(categories, key=lambda c: c.step)
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

    def holders_near(self, step: int) -> list[Holder]:
        self.calls.append("holders_near")
        before = max((h.step for h in self._holders if h.step <= step), default=None)
        after = min((h.step for h in self._holders if h.step > step), default=None)
        at = nearest(step, before, after)
        return sorted((h for h in self._holders if h.step == at), key=lambda h: -h.bytes)

    def categories(self, lo: int, hi: int, points: int) -> list[MemoryCategories]:
        self.calls.append("categories")
        before = [c for c in self._categories if c.step < lo][-1:]
        rows = before + [c for c in self._categories if lo <= c.step <= hi]
        if len(rows) > points:
            size = _bucket(lo, hi, points)
            last: dict[int, MemoryCategories] = {}
            for c in rows[len(before) :]:
                last[(c.step - lo) // size] = c
            rows = before + list(last.values())
        return rows

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
