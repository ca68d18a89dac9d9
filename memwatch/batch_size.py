"""``memwatch.find_batch_size``: the largest batch that fits, found without leaking.

Why not the usual loop? A hand-written "try, catch the OOM, halve, retry" keeps the
failed attempt alive into the retry (``oom-retry-loop``), so it settles far below what
the device can take, and it needs one trial per halving plus a bisection to get the
exact size. Here:

* every trial runs in its own frame and catches the OOM there (``torch.OutOfMemoryError``
  and the plain ``RuntimeError`` ones: cuBLAS/cuDNN allocation failures, "CUDA error: out
  of memory", MPS), so the exception, its traceback and the trial's tensors die with the
  frame; then ``gc.collect()`` (and ``torch.cuda.empty_cache()`` on CUDA) before the next
  trial;
* the peak of each trial is measured (tracked tensor bytes on CPU under a budget, the
  allocator's peak on CUDA, kept across the watch's step ends), so after one or two
  fitting trials the largest
  fitting size is *predicted* from bytes per sample, then verified and bracketed
  (prediction-guided bisection, with a plain bisection step whenever predictions stop
  closing the gap);
* a size fits when its trial raised no OOM and its peak stays under
  ``(1 - safety_margin) x capacity`` (capacity: the budget, or the free CUDA memory).

Works under ``memwatch run --budget`` / ``memwatch(budget=...)`` (it uses the watch's
tracking), and without a watch (``budget=`` installs one for the search, and on CUDA the
allocator's statistics are used directly).

This module is the search alone (no torch): the measuring and the trial runner live on
the collection side, in ``memwatch.collect.gauge``.

``step_fn(batch_size)`` should run one full training step at that size and keep nothing
between calls. Its optimizer steps do change the weights: search on a throwaway copy of
the model, or reload the weights afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from memwatch.errors import MemwatchError
from memwatch.units import format_size, parse_size


class Trial(NamedTuple):
    """One attempt: the size, whether it fitted, and its peak (bytes, None if unknown)."""

    batch_size: int
    fitted: bool
    peak_bytes: int | None


@dataclass(frozen=True)
class BatchSizeResult:
    """What ``find_batch_size`` found and how (``str()`` gives a readable summary).

    ``batch_size`` is None when even ``min_size`` does not fit. ``ooms`` lists the sizes
    whose trial raised OOM (other non-fitting trials exceeded the safety margin).
    ``held_after_bytes`` is memory still in use after the search beyond the level before
    it (optimizer state created by ``step_fn``, or references ``step_fn`` keeps).
    """

    batch_size: int | None
    trials: tuple[Trial, ...]
    ooms: tuple[int, ...]
    capacity_bytes: int | None
    limit_bytes: int | None
    safety_margin: float
    per_sample_bytes: float | None
    fixed_bytes: float | None
    baseline_bytes: int | None
    held_after_bytes: int | None

    def __str__(self) -> str:
        if self.batch_size is None:
            head = "find_batch_size: no batch size fits"
        else:
            head = f"find_batch_size: the largest batch that fits is {self.batch_size}"
        if self.limit_bytes is not None and self.capacity_bytes is not None:
            head += (
                f" (peak allowed {format_size(self.limit_bytes)} = "
                f"{format_size(self.capacity_bytes)} less a {self.safety_margin:.0%} margin)"
            )
        lines = [head, f"  {'trial':>5}  {'batch':>7}  {'result':<12}  peak"]
        for number, trial in enumerate(self.trials, 1):
            if trial.fitted:
                result = "fits"
            elif trial.batch_size in self.ooms:
                result = "OOM"
            else:
                result = "over margin"
            peak = format_size(trial.peak_bytes) if trial.peak_bytes is not None else "n/a"
            if result == "OOM" and trial.peak_bytes is not None:
                peak = f">= {peak}"
            lines.append(f"  {number:>5}  {trial.batch_size:>7}  {result:<12}  {peak}")
        if self.per_sample_bytes is not None and self.fixed_bytes is not None:
            lines.append(
                f"  measured {format_size(self.per_sample_bytes)} per sample "
                f"+ {format_size(self.fixed_bytes)} fixed"
            )
        if self.held_after_bytes is not None and self.held_after_bytes > 0:
            lines.append(
                f"  {format_size(self.held_after_bytes)} stayed in use after the search "
                "(optimizer state, or references step_fn keeps between calls)"
            )
        return "\n".join(lines)


def find_batch_size(
    step_fn: Callable[[int], object],
    start: int,
    *,
    max_size: int | None = None,
    min_size: int = 1,
    safety_margin: float = 0.1,
    max_trials: int = 16,
    budget: str | int | None = None,
) -> BatchSizeResult:
    """The largest batch size for which ``step_fn(batch_size)`` fits in memory.

    Args:
        step_fn: runs one training step at the given batch size.
        start: the first size tried (a guess; the search goes up or down from it).
        max_size: never try more than this. Needed where the capacity is unknown (a CPU
            run without a budget, where nothing ever runs out); default ``start`` there.
        min_size: never try less than this; if it does not fit the result is None.
        safety_margin: fraction of the capacity left free (allocator fragmentation,
            longer sequences later); 0 accepts anything that did not raise.
        max_trials: stop after this many trials with the best size verified so far.
        budget: with no tracking watch active, search as if the device had this many
            bytes (as ``memwatch(budget=...)``); an active watch's budget is used as is.
    """
    if start < 1 or min_size < 1:
        raise MemwatchError("find_batch_size: start and min_size must be at least 1")
    if not 0.0 <= safety_margin < 1.0:
        raise MemwatchError("find_batch_size: safety_margin must be in [0, 1)")
    from memwatch.collect.gauge import open_gauge, run_trial

    gauge = open_gauge(parse_size(budget) if budget is not None else None)
    try:
        search = _Search(step_fn, gauge, start, max_size, min_size, safety_margin, max_trials)
        return search.run(run_trial)
    finally:
        gauge.close()


# -- searching ------------------------------------------------------------------------------
class Gauge(Protocol):
    """What the search asks of the measurement side (``memwatch.collect.gauge``)."""

    capacity: int | None

    def in_use(self) -> int | None: ...
    def start_window(self) -> None: ...
    def window_peak(self) -> int | None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


#: Runs one trial; False when it ran out of memory.
TrialRunner = Callable[[Callable[[int], object], int], bool]


class _Search:
    """Bracket the answer between ``lo`` (largest size known to fit) and ``hi`` (smallest
    known not to), choosing each next size by prediction where it is trustworthy."""

    def __init__(
        self,
        step_fn: Callable[[int], object],
        gauge: Gauge,
        start: int,
        max_size: int | None,
        min_size: int,
        margin: float,
        max_trials: int,
    ) -> None:
        self.step_fn = step_fn
        self.gauge = gauge
        self.min_size = min_size
        capacity = gauge.capacity
        self.limit = int(capacity * (1.0 - margin)) if capacity is not None else None
        if max_size is None and self.limit is None:
            max_size = max(start, min_size)  # nothing runs out: never grow past the guess
        self.max_size = max_size
        self.start = max(min_size, start if max_size is None else min(start, max_size))
        self.margin = margin
        self.max_trials = max(1, max_trials)
        self.baseline: int | None = None
        self.trials: list[Trial] = []
        self.ooms: list[int] = []
        self.fits: dict[int, int] = {}  # size -> index of the trial that showed it fits
        self.completed: dict[int, int] = {}  # size -> peak, for every trial that ran through
        self.lo = min_size - 1
        self.hi: int | None = (max_size + 1) if max_size is not None else None
        self._moves: list[int] = []  # how far each trial moved the bracket
        self._edge_step = 1  # galloping step when the model says "lo is the maximum"
        self._edge_probe = False

    def run(self, attempt: TrialRunner) -> BatchSizeResult:
        self.attempt = attempt
        gauge = self.gauge
        gauge.release()
        self.baseline = gauge.in_use()
        size: int | None = self.start
        while size is not None and len(self.trials) < self.max_trials:
            self._trial(size)
            size = self._next()
        # A size measured only by the very first trial may have fitted before persistent
        # state (optimizer moments, caches) existed: confirm it once.
        if self.lo >= self.min_size and len(self.trials) > 1 and self.fits[self.lo] == 0:
            self._trial(self.lo)
        gauge.release()
        after = gauge.in_use()
        slope, fixed = self._model()
        baseline = self.baseline
        return BatchSizeResult(
            batch_size=self.lo if self.lo >= self.min_size else None,
            trials=tuple(self.trials),
            ooms=tuple(self.ooms),
            capacity_bytes=gauge.capacity,
            limit_bytes=self.limit,
            safety_margin=self.margin,
            per_sample_bytes=slope,
            fixed_bytes=fixed,
            baseline_bytes=baseline,
            held_after_bytes=(after - baseline)
            if after is not None and baseline is not None
            else None,
        )

    def _trial(self, size: int) -> None:
        gauge = self.gauge
        gauge.release()
        gauge.start_window()
        ok = self.attempt(self.step_fn, size)
        peak = gauge.window_peak()
        fitted = ok and (self.limit is None or peak is None or peak <= self.limit)
        if not ok:
            self.ooms.append(size)
        index = len(self.trials)
        lo_before, hi_before = self.lo, self.hi
        self.trials.append(Trial(size, fitted, peak))
        if self._edge_probe:
            self._edge_step = self._edge_step * 2 if fitted else 1
        if ok and peak is not None:
            self.completed[size] = peak
        if fitted:
            self.fits[size] = index
            self.lo = max(self.lo, size)
            if self.hi is not None and self.hi <= size:  # flaky: trust the latest trial
                self.hi = None if self.max_size is None else self.max_size + 1
        else:
            self.fits.pop(size, None)
            self.hi = size if self.hi is None else min(self.hi, size)
            if self.lo >= size:
                self.lo = max((s for s in self.fits if s < size), default=self.min_size - 1)
        moved_lo = self.lo - lo_before
        moved_hi = 0 if hi_before is None or self.hi is None else hi_before - self.hi
        if hi_before is None and self.hi is not None:
            moved_hi = self.hi  # a first upper bound: a big move
        self._moves.append(max(abs(moved_lo), abs(moved_hi)))

    def _model(self) -> tuple[float | None, float | None]:
        """Bytes per sample and fixed bytes near the boundary.

        Peaks are piecewise linear in the batch size (which phase of the step peaks can
        change with the size), so the secant through the two completed trials nearest
        the largest fitting size predicts better than a fit over all of them. With one
        point, everything above the baseline is charged to the samples: an overestimate
        per sample, so that first prediction errs on the small, safe side.
        """
        points = sorted(self.completed.items(), key=lambda sp: (abs(sp[0] - self.lo), sp[0]))
        if len(points) >= 2:
            (s1, p1), (s2, p2) = points[0], points[1]
            slope = (p2 - p1) / (s2 - s1)
            if slope > 0:
                return slope, p1 - slope * s1
        if points and self.baseline is not None:
            size, peak = points[0]
            if peak > self.baseline:
                return (peak - self.baseline) / size, float(self.baseline)
        return None, None

    def _stalled(self) -> bool:
        """The last two trials each moved the bracket by one: predictions creep, bisect."""
        hi = self.hi
        if hi is None or hi - self.lo <= 2 or len(self._moves) < 2:
            return False
        return self._moves[-1] <= 1 and self._moves[-2] <= 1

    def _next(self) -> int | None:
        lo, hi = self.lo, self.hi
        self._edge_probe = False
        if hi is not None and hi - lo <= 1:
            return None  # lo fits and lo + 1 does not (or lo is the maximum allowed)
        if lo < self.min_size:
            assert hi is not None  # a failed trial set it
            guess = max(self.min_size, hi // 2)  # nothing fits yet: halve (no peak to use)
            return guess if guess < hi else None
        if self.limit is None:  # capacity unknown: grow geometrically, then bisect
            return self._bound(lo * 2 if hi is None else (lo + hi) // 2)
        slope, fixed = self._model()
        if slope is None or fixed is None or self._stalled():
            return self._bound((lo + hi) // 2 if hi is not None else lo * 2)
        predicted = int((self.limit - fixed) // slope)
        if predicted > lo:
            return self._bound(predicted)
        self._edge_probe = True  # the model says lo is the largest: check lo + step
        return self._bound(lo + self._edge_step)

    def _bound(self, guess: int) -> int | None:
        lo, hi = self.lo, self.hi
        if hi is not None:
            guess = min(guess, hi - 1)
        if self.max_size is not None:
            guess = min(guess, self.max_size)
        guess = max(guess, lo + 1)
        too_big = self.max_size is not None and guess > self.max_size
        return None if too_big or (hi is not None and guess >= hi) else guess
