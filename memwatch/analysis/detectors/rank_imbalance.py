"""``rank-imbalance``: one rank's memory stands far apart from the other ranks'.

In data-parallel training every rank runs the same code on a same-sized shard, so their
memory curves should nearly coincide. When one rank's peak or growth per step stands
apart, that rank does something the others don't (an uneven shard, code under
``if rank == 0``, buffers only it keeps), and it is the rank that will run out of memory
first while the others idle in their collectives.

Unlike the per-run detectors (``detect(AnalysisInput)``, listed in the registry), this one
judges several runs at once, so it is a pure function of each rank's step records,
called by the multi-rank views (``memwatch report RUN_DIR``, ``memwatch check RUN_DIR``).

Robustness, because a false alarm on every DDP run would teach people to ignore it:

* a rank is compared with the **median of the other ranks** (so two ranks work: each is
  judged against the other), and only ranks standing *above* are reported (memory
  problems are about more, not less);
* with three or more other ranks the gap must also exceed a multiple of their spread
  (MAD), so naturally noisy metrics don't fire on a large world;
* each metric has an **absolute minimum** gap (and, for peaks, a minimum ratio), so tiny
  runs, where a few KiB make a large ratio, never fire;
* growth is the Theil-Sen slope (median of pairwise slopes) of the steps after warmup,
  insensitive to a single odd step; peaks are compared over the steps every rank reached,
  so a rank killed early does not make the others look high.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from memwatch.analysis.detectors.loop_common import theil_sen
from memwatch.records import Finding, StepRecord, saved_in_step
from memwatch.units import format_size

KIND = "rank-imbalance"

KiB = 1024
MiB = 1024 * 1024

#: Boundaries of real training steps; the closing partial step ("end") is taken after the
#: script's locals are gone and would bend a slope.
_TRAINING_BOUNDARIES = frozenset({"optimizer", "manual", "scaler", "forward"})
_MIN_GROWTH_STEPS = 4
_MAX_SLOPE_POINTS = 200
_MAD_SCALE = 1.4826  # MAD -> standard deviation for normal data
_MAD_FACTOR = 4.0


@dataclass(frozen=True)
class Metric:
    """One comparable number per rank, with the gap that makes it "far apart"."""

    name: str  # evidence key, e.g. "saved_growth_per_step_bytes"
    label: str  # what is measured, in words: "autograd-saved memory"
    short: str  # the same for one-line titles: "saved tensors"
    growth: bool  # a per-step slope (True) or a peak (False)
    min_excess: float  # bytes (peaks) or bytes per step (growth) above the others' median
    min_ratio: float = 1.0  # peaks: value / others' median must reach this
    min_total: float = 0.0  # growth: excess slope x judged steps must reach this


#: Tracked tensor memory is exact (no noise), so its minimums are small; host RSS moves with
#: the allocator and page cache, so its minimums are large.
METRICS: tuple[Metric, ...] = (
    Metric(
        "allocated_growth_per_step_bytes",
        "device memory",
        "device memory",
        True,
        256 * KiB,
        min_total=16 * MiB,
    ),
    Metric(
        "saved_growth_per_step_bytes",
        "autograd-saved memory",
        "saved tensors",
        True,
        64 * KiB,
        min_total=4 * MiB,
    ),
    Metric("rss_growth_per_step_bytes", "host RSS", "host RSS", True, 1 * MiB, min_total=64 * MiB),
    Metric(
        "peak_allocated_bytes", "device memory", "device memory", False, 64 * MiB, min_ratio=1.25
    ),
    Metric(
        "peak_autograd_saved_bytes",
        "autograd-saved memory",
        "saved tensors",
        False,
        8 * MiB,
        min_ratio=1.5,
    ),
    Metric("peak_rss_bytes", "host RSS", "host RSS", False, 256 * MiB, min_ratio=1.25),
)


@dataclass(frozen=True)
class RankStats:
    """The per-rank numbers the views show side by side and the detector compares."""

    rank: int
    steps: int
    first_step: int | None
    last_step: int | None
    peak_allocated_bytes: int | None
    peak_autograd_saved_bytes: int | None
    peak_rss_bytes: int | None
    allocated_growth_per_step_bytes: int | None  # None where the device is not measured
    saved_growth_per_step_bytes: int | None
    rss_growth_per_step_bytes: int | None

    def value(self, name: str) -> int | None:
        value: int | None = getattr(self, name)
        return value


def _slope(steps: Sequence[StepRecord], get: Callable[[StepRecord], int | None]) -> int | None:
    points = [(s.step, float(v)) for s in steps if (v := get(s)) is not None]
    if len(points) < _MIN_GROWTH_STEPS:
        return None
    xs, ys = zip(*points)
    return round(theil_sen(xs, ys, max_points=_MAX_SLOPE_POINTS))


def _peak(values: Sequence[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _allocated(s: StepRecord) -> int | None:
    values = [v for v in (s.peak_allocated_bytes, s.allocated_bytes) if v is not None]
    return max(values) if values else None


def _judged(steps: Sequence[StepRecord], warmup: int) -> list[StepRecord]:
    """The training steps after warmup (all training steps if that leaves too few)."""
    training = [s for s in steps if s.boundary in _TRAINING_BOUNDARIES]
    judged = [s for s in training if s.step >= warmup]
    return judged if len(judged) >= _MIN_GROWTH_STEPS else training


def rank_stats(
    rank: int, steps: Sequence[StepRecord], warmup: int = 3, up_to_step: int | None = None
) -> RankStats:
    """Summarise one rank's steps: peaks (up to ``up_to_step``) and slopes after warmup."""
    peaks = [s for s in steps if up_to_step is None or s.step <= up_to_step]
    judged = _judged(steps, warmup)
    return RankStats(
        rank=rank,
        steps=len(steps),
        first_step=steps[0].step if steps else None,
        last_step=steps[-1].step if steps else None,
        peak_allocated_bytes=_peak([_allocated(s) for s in peaks]),
        peak_autograd_saved_bytes=_peak([saved_in_step(s) for s in peaks]) if peaks else None,
        peak_rss_bytes=_peak([s.rss_bytes for s in peaks]),
        allocated_growth_per_step_bytes=_slope(judged, lambda s: s.allocated_bytes),
        saved_growth_per_step_bytes=_slope(judged, lambda s: s.saved_bytes),
        rss_growth_per_step_bytes=_slope(judged, lambda s: s.rss_bytes),
    )


def common_last_step(ranks: Mapping[int, Sequence[StepRecord]]) -> int | None:
    """The last step every rank with steps reached (peaks are compared up to it)."""
    lasts = [steps[-1].step for steps in ranks.values() if steps]
    return min(lasts) if lasts else None


def all_rank_stats(ranks: Mapping[int, Sequence[StepRecord]], warmup: int = 3) -> list[RankStats]:
    """``rank_stats`` of every rank, peaks over the common step range, in rank order."""
    last = common_last_step(ranks)
    return [rank_stats(r, ranks[r], warmup, last) for r in sorted(ranks)]


@dataclass(frozen=True)
class _Gap:
    metric: Metric
    value: int
    others_median: float
    excess: float
    per_rank: dict[int, int]
    judged_steps: int

    @property
    def ratio(self) -> float | None:
        return self.value / self.others_median if self.others_median > 0 else None

    @property
    def strength(self) -> float:
        """How many times the minimum gap this one is (to pick the headline metric)."""
        return self.excess / self.metric.min_excess


def _gap(metric: Metric, stats: RankStats, others: list[RankStats], judged: int) -> _Gap | None:
    value = stats.value(metric.name)
    other_values = [v for o in others if (v := o.value(metric.name)) is not None]
    if value is None or not other_values:
        return None
    median = statistics.median(other_values)
    excess = value - median
    if excess < metric.min_excess:
        return None
    if metric.growth:
        if excess * judged < metric.min_total:
            return None
        if median > 0 and value < 2 * median:  # everyone grows; this one not twice as fast
            return None
    elif median > 0 and value < metric.min_ratio * median:
        return None
    if len(other_values) >= 3:
        mad = statistics.median(abs(v - median) for v in other_values)
        if excess < _MAD_FACTOR * _MAD_SCALE * mad:
            return None
    per_rank = {s.rank: v for s in [stats, *others] if (v := s.value(metric.name)) is not None}
    return _Gap(metric, value, median, excess, per_rank, judged)


def _describe(gap: _Gap, others: str = "the others'") -> str:
    """``autograd-saved memory grows +1.0 MiB/step, the others' +0 B/step``."""
    if gap.metric.growth:
        return (
            f"{gap.metric.label} grows {format_size(gap.value, signed=True)}/step, "
            f"{others} {format_size(gap.others_median, signed=True)}/step"
        )
    ratio = f"{gap.ratio:.1f}x " if gap.ratio is not None else ""
    return (
        f"{gap.metric.label} peaks at {format_size(gap.value)}, "
        f"{ratio}{others} {format_size(gap.others_median)}"
    )


def _title(rank: int, gap: _Gap) -> str:
    """A title that fits 80 columns: ``rank 1: saved tensors +1.0 MiB/step vs +0 B/step``."""
    head = f"rank {rank}: {gap.metric.short}"
    if gap.metric.growth:
        value, median = (format_size(v, signed=True) for v in (gap.value, gap.others_median))
        return f"{head} {value}/step vs {median}/step"
    if gap.ratio is not None:
        return f"{head} peak {format_size(gap.value)}, {gap.ratio:.1f}x the others"
    return f"{head} peak {format_size(gap.value)} vs {format_size(gap.others_median)}"


def detect_rank_imbalance(
    ranks: Mapping[int, Sequence[StepRecord]], warmup: int = 3
) -> list[Finding]:
    """One ``rank-imbalance`` finding per rank whose memory stands far above the others'.

    ``ranks`` maps each rank to its step records in order. Fewer than two ranks with steps
    give nothing to compare.
    """
    ranks = {r: list(s) for r, s in ranks.items() if s}
    if len(ranks) < 2:
        return []
    stats = all_rank_stats(ranks, warmup)
    findings = []
    for mine in stats:
        others = [s for s in stats if s.rank != mine.rank]
        judged = len(_judged(ranks[mine.rank], warmup))
        gaps = [g for m in METRICS if (g := _gap(m, mine, others, judged)) is not None]
        if gaps:
            findings.append(_finding(mine, gaps, ranks[mine.rank], warmup, len(ranks)))
    return findings


def _finding(
    stats: RankStats, gaps: list[_Gap], steps: Sequence[StepRecord], warmup: int, world: int
) -> Finding:
    gaps = sorted(gaps, key=lambda g: g.strength, reverse=True)
    head = gaps[0]
    growth = next((g for g in gaps if g.metric.growth), None)
    peak = next((g for g in gaps if not g.metric.growth), None)
    rank = stats.rank
    others = "the other rank's" if world == 2 else f"the other {world - 1} ranks' (median)"
    title = _title(rank, head)
    detail = (
        f"Rank {rank}'s memory stands far apart from {others}: "
        + "; ".join(_describe(g, others) for g in gaps)
        + ". In data-parallel training every rank should use about the same memory; "
        f"rank {rank} will run out first while the others wait for it."
    )
    first = next((s.step for s in steps if s.step >= warmup), steps[0].step)
    return Finding(
        kind=KIND,
        severity="warning",
        title=title,
        detail=detail,
        first_step=first,
        fix=(
            f"Look at what rank {rank} does that the others don't: code under `if rank == "
            f"{rank}` (logging, metrics, evaluation, checkpointing), a larger or uneven data "
            f"shard, buffers only it keeps; rank {rank}'s own findings say where its memory goes."
        ),
        bytes=round(peak.excess) if peak is not None else None,
        growth_per_step_bytes=growth.value if growth is not None else None,
        evidence={
            "rank": rank,
            "metric": head.metric.name,
            "value": head.value,
            "others_median": head.others_median,
            "ratio": head.ratio,
            "metrics": {
                g.metric.name: {
                    "value": g.value,
                    "others_median": g.others_median,
                    "excess": g.excess,
                    "per_rank": {str(r): v for r, v in sorted(g.per_rank.items())},
                }
                for g in gaps
            },
            "ranks_compared": world,
        },
        rank=rank,
    )
