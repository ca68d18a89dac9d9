"""The dashboard's data, read in worker threads and handed to the UI as frozen snapshots.

Every method may touch the run file, so the app calls them from Textual thread workers,
never from the event loop; one lock serialises them (a SQLite connection is used by one
thread at a time). Results are immutable (``Snapshot``, ``ChartData``, ``CursorData``),
so the UI thread never shares mutable state with a worker.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from memwatch.errors import RunFileError
from memwatch.records import Finding, Holder, RunInfo, StepRecord, sort_findings
from memwatch.store.liveness import writer_alive

from .feed import Bounds, RunFeed, sample_points
from .index import MinMaxIndex
from .view import ChartData, blocks_from_samples, chart_from_blocks


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run as last read: description, recorded steps, findings (most severe first)."""

    info: RunInfo
    first: int | None
    last: int | None
    findings: tuple[Finding, ...]
    alive: bool | None
    last_seen: float | None = None  # wall time the newest step ended
    indexed: bool = False  # the min/max index covers every recorded step


@dataclass(frozen=True, slots=True)
class CursorData:
    """Exact values at the cursor's step and what held memory there."""

    step: int
    record: StepRecord | None
    holders: tuple[Holder, ...]


class RunModel:
    """Reads a ``RunFeed`` incrementally: a follow refresh costs a few indexed queries.

    Args:
        source: where the run comes from (a run file, or a fake in tests).
        alive: tells whether the writer process still runs (injected for tests).
        base: steps per finest index block; windows with fewer than ``base`` steps per
            screen column are read directly from the file.
        chunk: level-0 blocks read per lock hold while indexing, so a cursor query
            waits at most one chunk (~15 ms on a million-step run).
    """

    def __init__(
        self,
        source: RunFeed,
        alive: Callable[[RunInfo], bool | None] = writer_alive,
        base: int = 256,
        chunk: int = 256,
    ) -> None:
        self.source = source
        self._alive = alive
        self._base = base
        self._chunk = chunk
        self._lock = threading.Lock()
        self._index: MinMaxIndex | None = None
        self._bounds = Bounds(None, None, -2)
        self._findings: tuple[Finding, ...] = ()
        self._findings_version: tuple[int, float] | None = None
        self._snapshot: Snapshot | None = None
        self._closed = False

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Hold the lock for one read; a closed model raises ``RunFileError`` instead."""
        with self._lock:
            if self._closed:
                raise RunFileError(f"{self.source.label} was closed")
            yield

    # -- the run as a whole ----------------------------------------------------------------
    def refresh(self, force: bool = False) -> Snapshot | None:
        """Re-read what changed since the last call; None when nothing did (unless ``force``)."""
        with self._reading():
            bounds = self.source.bounds()
            previous = self._snapshot
            if previous is not None and bounds == self._bounds:
                if force:
                    return previous
                alive = self._alive(previous.info)
                if alive == previous.alive:
                    return None
                self._snapshot = replace(previous, alive=alive)
                return self._snapshot
            info = self.source.info()
            version = self.source.findings_version()
            if version != self._findings_version:
                self._findings = tuple(sort_findings(self.source.findings()))
                self._findings_version = version
            if bounds.first is not None and (
                self._index is None or bounds.first < self._index.origin
            ):
                self._index = MinMaxIndex(bounds.first, base=self._base)
            self._bounds = bounds
            last_seen = None
            if bounds.last is not None:
                record = self.source.step_at(bounds.last)
                if record is not None:
                    last_seen = record.started_at + record.duration_s
            self._snapshot = Snapshot(
                info=info,
                first=bounds.first,
                last=bounds.last,
                findings=self._findings,
                alive=self._alive(info),
                last_seen=last_seen,
                indexed=self._indexed(),
            )
            return self._snapshot

    def _indexed(self) -> bool:
        last = self._bounds.last
        return last is None or (self._index is not None and self._index.covered_to > last)

    def index_more(self) -> bool:
        """Read the next chunk of min/max blocks; True once every recorded step is indexed.

        Call repeatedly from a worker (the lock is released between chunks). The newest
        block is re-read each time, as the writer may still be filling it.
        """
        with self._reading():
            index, last = self._index, self._bounds.last
            if index is None or last is None:
                return True
            start = index.resume_at()
            stop = min(last + 1, start + self._chunk * index.base)
            if start <= last:
                index.update(self.source.block_stats(start, stop, index.base))
            done = index.covered_to > last
            if done and self._snapshot is not None and not self._snapshot.indexed:
                self._snapshot = replace(self._snapshot, indexed=True)
            return done

    # -- views -----------------------------------------------------------------------------
    def chart(self, lo: int, hi: int, buckets: int) -> ChartData:
        """Down-sampled series for steps ``lo..hi`` in about ``buckets`` columns.

        Narrow windows are read exactly from the file, wide ones from the index; until the
        index is built a wide window is previewed from sampled steps (``exact=False``).
        """
        buckets = max(1, buckets)
        span = hi - lo + 1
        with self._reading():
            categories = tuple(self.source.categories(lo, hi, 2 * buckets))
            if span <= self._base * buckets:
                size = max(1, math.ceil(span / buckets))
                blocks = self.source.block_stats(lo, hi + 1, size)
                return chart_from_blocks(blocks, lo, hi, categories=categories)
            if self._index is not None:
                found = self._index.query(lo, hi, buckets)
                if found is not None:
                    return chart_from_blocks(found, lo, hi, categories=categories)
            samples = self.source.sample(sample_points(lo, hi, 2 * buckets))
            return chart_from_blocks(
                blocks_from_samples(samples), lo, hi, exact=False, categories=categories
            )

    def cursor(self, step: int) -> CursorData:
        with self._reading():
            record = self.source.step_at(step)
            holders = self.source.holders_near(step)
        return CursorData(step, record, tuple(holders))

    def close(self) -> None:
        """Close the run; later reads raise ``RunFileError`` (workers still running stop)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self.source.close()
