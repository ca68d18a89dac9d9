"""Evidence for ``memory-growth``: a named holder whose tensor bytes grow step after step.

A forward hook appending activations to a global list, a dict cache on a module, a list
of detached outputs kept "for later": the graph is not the problem (that is
``graph-accumulation``), the tensors are. The holder scan measures each name's bytes at
every step end; this checker keeps a short series per name and records
``memwatch.evidence.HolderGrowth`` measurements (bytes, largest size, rate, the last step
that grew, whether a local list is still the same one). *When* it records is a cheap
trigger, not a verdict: once a holder has grown for ``CONFIRM_STEPS`` consecutive steps
at ``RECORD_MIN_GROWTH_PER_STEP`` or more, again every ``REEMIT_EVERY`` steps while it
keeps growing, and once more when it has not grown for ``STOP_AFTER`` steps or dropped
back. Whether it is a leak (still growing, enough bytes) is decided by the
``memory-growth`` detector alone, so a run file read offline gives the same answer.

What is *not* growth: a ``best_model = copy.deepcopy(model)`` (one jump, then flat), a
batch whose size varies, a list rebuilt every step (for local containers the *same*
container must keep last step's last element), and tensors with a ``grad_fn`` (left to
the graph check, which says what to change more precisely).
"""

from __future__ import annotations

import itertools
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memwatch.collect.graph_probe import (
    holds_at,
    locate_statement,
    statement_fields,
    statement_location,
)
from memwatch.collect.holders import Entry, Scan, first_tensor
from memwatch.evidence import HolderGrowth

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost
    from memwatch.source.statements import Statement

MIN_DELTA = 1024  # a step "grew" when the holder gained at least this many bytes
#: Record a growing holder from this rate: a trigger kept below the detector's threshold
#: (``memory_growth.MIN_GROWTH_PER_STEP``) so the detector always has the measurements.
RECORD_MIN_GROWTH_PER_STEP = 16 * 1024
CONFIRM_STEPS = 3
REEMIT_EVERY = 16
STOP_AFTER = 8  # steps without growth after which the stop is recorded (detector: same)
MAX_SERIES = 256
FORGET_AFTER = 16
#: Stepwise growth (every k steps: evaluation, checkpoint, logging intervals): recorded
#: once a holder rose this many times since it last fell back, with no fall between.
STEPWISE_RISES = 3
MAX_RISES = 32


@dataclass(slots=True)
class _Series:
    samples: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=16))
    streak: int = 0
    start_step: int = 0  # first step of the current growth run
    start_bytes: int = 0  # bytes at the sample before it
    start_prev_step: int = 0  # the step of that sample (steps between may be unscanned)
    start_step_bytes: int = 0  # bytes at start_step
    state: str = ""  # "", "growing", "stopped", "reset"
    last_emit: int = -1
    last_growth: int = -1
    max_bytes: int = 0
    last_bytes: int = -1
    last_seen: int = 0
    length: int = 0
    last_ref: Any = None
    last_key: Any = None
    located: bool = False
    statement: Statement | None = None
    #: steps at which the holder rose since it last fell back (stepwise growth)
    rises: list[int] = field(default_factory=list)
    rise_from: tuple[int, int] = (0, 0)  # (step, bytes) of the sample before the first rise
    period: int = 0
    #: the largest size before the holder was last emptied or rebuilt (0: never was)
    cycle_peak: int = 0


class GrowthChecker:
    """Per-name byte series from the holder scan; emits ``holder-growth`` events."""

    def __init__(self) -> None:
        self._series: dict[tuple[Any, str], _Series] = {}
        self._passes = 0
        #: a holder grew at this pass: look again at the next step
        self.eager = False

    def on_step_end(self, tracker: ProbeHost, scan: Scan) -> None:
        self.eager = False
        step = scan.step
        for entry in scan.entries:
            if entry.kind not in ("tensor", "container") or entry.grad:
                continue
            if isinstance(entry.value, deque) and entry.value.maxlen is not None:
                continue  # bounded by construction: it fills up, then stays
            if entry.kind == "tensor" and entry.scope == "local" and entry.bytes < MIN_DELTA:
                continue
            key = (scan.frames[entry.frame_index].code, entry.name)
            series = self._series.get(key)
            if (
                series is not None
                and series.streak == 0
                and series.state != "growing"
                and series.last_bytes == entry.bytes
                and series.length == entry.length
            ):
                series.last_seen = step  # unchanged, the usual case: nothing to judge
                continue
            if series is None:
                if len(self._series) >= MAX_SERIES:
                    continue
                series = _Series()
                self._series[key] = series
            self._update(tracker, scan, entry, series, step)
        self._passes += 1
        if self._passes % FORGET_AFTER == 0 or len(self._series) >= MAX_SERIES:
            stale = [k for k, s in self._series.items() if step - s.last_seen > FORGET_AFTER]
            for key in stale:
                del self._series[key]

    def _same_container(self, entry: Entry, series: _Series) -> bool:
        if entry.kind != "container" or entry.scope != "local" or series.length == 0:
            return True
        previous = series.last_ref() if series.last_ref is not None else None
        if previous is None or entry.length < series.length:
            return False
        return holds_at(entry.value, series.length - 1, series.last_key, previous)

    def _update(
        self, tracker: ProbeHost, scan: Scan, entry: Entry, series: _Series, step: int
    ) -> None:
        series.last_seen = step
        same = self._same_container(entry, series)
        if entry.kind == "container":
            series.length = entry.length
            last = first_tensor(entry.last) if entry.length else None
            try:
                series.last_ref = weakref.ref(last) if last is not None else None
            except TypeError:
                series.last_ref = None
            series.last_key = None
            if isinstance(entry.value, dict) and entry.length:
                try:
                    candidate = next(reversed(entry.value.keys()))
                    if isinstance(candidate, (int, str)):
                        series.last_key = candidate
                except Exception:
                    pass
        nbytes = entry.bytes
        previous = series.samples[-1][1] if series.samples else None
        previous_step = series.samples[-1][0] if series.samples else step - 1
        series.samples.append((step, nbytes))
        series.last_bytes = nbytes
        series.max_bytes = max(series.max_bytes, nbytes)
        if previous is None:
            return
        if not same:
            series.streak = 0
            series.rises.clear()
            series.cycle_peak = max(series.cycle_peak, previous)
            if series.state == "growing":
                self._emit(tracker, scan, entry, series, step, "reset", same=False)
            return
        if nbytes - previous >= MIN_DELTA:
            if not series.rises:
                series.rise_from = (previous_step, previous)
            series.rises.append(step)
            del series.rises[:-MAX_RISES]
            if series.streak == 0:
                series.start_step = step
                series.start_bytes = previous
                series.start_prev_step = previous_step
                series.start_step_bytes = nbytes
            series.streak += 1
            series.last_growth = step
            self.eager = True
        elif nbytes < previous - MIN_DELTA:
            series.streak = 0
            series.rises.clear()
            series.period = 0
            if nbytes < previous // 2:
                series.cycle_peak = max(series.cycle_peak, previous)
            if series.state == "growing" and nbytes < series.max_bytes // 2:
                self._emit(tracker, scan, entry, series, step, "reset")
            return
        else:
            series.streak = 0
            if series.state == "growing" and step - series.last_growth >= _stop_after(series):
                self._emit(tracker, scan, entry, series, step, "stopped")
            return
        if series.streak < CONFIRM_STEPS:
            self._stepwise(tracker, scan, entry, series, step, nbytes)
            return
        series.period = 0
        growth = _rate(series, nbytes, step)
        if growth < RECORD_MIN_GROWTH_PER_STEP:
            return
        if entry.kind == "tensor" and entry.scope == "local" and not _steady(series):
            return  # e.g. an episode that is longer every step: not a leak
        if series.state != "growing" or step - series.last_emit >= REEMIT_EVERY:
            self._emit(tracker, scan, entry, series, step, "growing")

    def _stepwise(
        self, tracker: ProbeHost, scan: Scan, entry: Entry, series: _Series, step: int, nbytes: int
    ) -> None:
        """Growth every k steps: ``STEPWISE_RISES`` rises with no fall between them."""
        rises = series.rises
        if len(rises) < STEPWISE_RISES:
            return
        if entry.kind != "container" and entry.scope == "local":
            return  # a variable rebound to bigger tensors now and then: not a holder filling
        gaps = sorted(b - a for a, b in itertools.pairwise(rises))
        period = gaps[len(gaps) // 2]
        if period < 2:
            return  # every step: the streak above judges it
        since_step, since_bytes = series.rise_from
        rate = (nbytes - since_bytes) // max(1, step - since_step)
        if rate * period < RECORD_MIN_GROWTH_PER_STEP:
            return
        series.period = period
        if series.state != "growing" or step - series.last_emit >= REEMIT_EVERY:
            self._emit(tracker, scan, entry, series, step, "growing")

    def _emit(
        self,
        tracker: ProbeHost,
        scan: Scan,
        entry: Entry,
        series: _Series,
        step: int,
        state: str,
        same: bool = True,
    ) -> None:
        """Record the holder's measurements; ``state`` is only why the probe records now."""
        if not series.located:
            series.located = True
            try:
                series.statement = locate_statement(
                    scan.frames[entry.frame_index], entry, entry.target or entry.name, []
                )
            except Exception:
                series.statement = None
        statement = series.statement
        frame = scan.frames[entry.frame_index]
        location = statement_location(statement) if statement is not None else frame.location
        growing = state == "growing"
        stepwise = series.period >= 2
        if stepwise:
            since_step, since_bytes = series.rise_from
            rate = (entry.bytes - since_bytes) // max(1, step - since_step) if growing else 0
            first_step = series.rises[0] if series.rises else step
            start_bytes = since_bytes
        else:
            rate = _rate(series, entry.bytes, step) if growing else 0
            first_step = _first_step(series, rate)
            start_bytes = series.start_bytes
        owner = entry.owner_type.__name__ if entry.owner_type is not None else None
        evidence = HolderGrowth(
            holder=entry.name,
            scope=entry.scope,
            owner_class=owner,
            kind=entry.kind,
            bytes=entry.bytes,
            max_bytes=series.max_bytes,
            tensors=entry.tensors,
            length=entry.length,
            estimated=entry.estimated,
            first_step=first_step,
            start_bytes=start_bytes,
            growth_per_step_bytes=max(0, rate),
            last_growth_step=series.last_growth if series.last_growth >= 0 else None,
            same_container=same,
            samples=tuple((int(a), int(b)) for a, b in list(series.samples)[-8:]),
            **statement_fields(statement),
            period_steps=series.period,
            rises=len(series.rises),
            host_bytes=entry.host_bytes,
            census=entry.census,
            cycle_peak_bytes=series.cycle_peak,
        )
        if state == "growing" and series.state != "growing":
            tracker.analysis_requested = True  # newly confirmed: report it now
        series.state = state
        series.last_emit = step
        tracker.emit(evidence.event(step, location))


def _stop_after(series: _Series) -> int:
    """Steps without growth after which growth stopped (two periods for stepwise growth)."""
    return max(STOP_AFTER, 2 * series.period + 1)


def _rate(series: _Series, nbytes: int, step: int) -> int:
    """Bytes per step: from the consecutive samples since growth was seen, if any.

    The sample before growth may be several steps back (quiet steps are not scanned), so
    the first increase can span a gap; once growth is seen every step is scanned.
    """
    if step > series.start_step:
        return (nbytes - series.start_step_bytes) // (step - series.start_step)
    return (nbytes - series.start_bytes) // max(1, step - series.start_prev_step)


def _first_step(series: _Series, rate: int) -> int:
    """The step growth began: the first increase, spread over the unscanned gap at ``rate``."""
    if rate <= 0:
        return series.start_step
    gap_steps = -(-(series.start_step_bytes - series.start_bytes) // rate)  # ceil
    return max(series.start_prev_step + 1, series.start_step - gap_steps + 1)


def _steady(series: _Series) -> bool:
    """The last growth steps added similar amounts (a leak), not ever bigger ones."""
    values = [b for _, b in series.samples][-(CONFIRM_STEPS + 1) :]
    deltas = [b - a for a, b in itertools.pairwise(values)]
    if not deltas or min(deltas) <= 0:
        return False
    return max(deltas) <= 1.5 * min(deltas)
