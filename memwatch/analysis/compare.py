"""Comparing two runs, and a run against a baseline: pure functions over plain data.

A ``RunProfile`` is the handful of numbers that say how much memory a run used and how it
behaved: peaks, growth per step after warm-up, the categories at the peak, step time and
the findings. It is computed from the step records (``profile``), written as a small JSON
baseline (``to_dict``/``from_dict``, schema ``memwatch.baseline/1``), and compared:

* ``diff(a, b)``: every metric side by side, the findings that appeared or disappeared,
  the first step where B's memory leaves A's, and a one-line verdict;
* ``check(run, baseline, tolerance)``: the metrics that exceed the baseline beyond the
  tolerance (the CI gate).

Memory metrics are the ones memwatch measures per step: tensor bytes (the CUDA allocator,
or tracked tensors on CPU) where the steps have them, the bytes autograd saved for
backward (always), and host RSS (reported, never gated: the host allocator keeps freed
memory for reasons that are not the program's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from memwatch.analysis.categories import peak_categories
from memwatch.errors import MemwatchError
from memwatch.records import (
    CATEGORY_FIELDS,
    Finding,
    MemoryCategories,
    StepRecord,
    saved_in_step,
)
from memwatch.units import format_size

BASELINE_SCHEMA = "memwatch.baseline/1"
DEFAULT_WARMUP = 3
DEFAULT_TOLERANCE = 0.05
#: Growth below this many bytes per step is noise (detached scalars, allocator rounding):
#: a baseline of 0 B/step still passes a run growing by less.
GROWTH_SLACK = 1024
#: Absolute slack for peaks and categories, so tiny runs do not fail on a few bytes.
PEAK_SLACK = 4096


@dataclass(frozen=True, slots=True)
class Metric:
    """One comparable number: its key, what people call it, its unit and whether it gates."""

    key: str
    label: str
    unit: str  # "bytes", "bytes/step", "seconds"
    gated: bool


METRICS: tuple[Metric, ...] = (
    Metric("peak_allocated_bytes", "peak tensor memory", "bytes", True),
    Metric("peak_saved_bytes", "peak autograd saved", "bytes", True),
    Metric("peak_rss_bytes", "peak host RSS", "bytes", False),
    Metric("allocated_growth", "tensor memory growth", "bytes/step", True),
    Metric("saved_growth", "autograd kept across steps", "bytes/step", True),
    Metric("rss_growth", "host RSS growth", "bytes/step", False),
    Metric("median_step_s", "median step time", "seconds", False),
)
CATEGORY_METRICS: tuple[Metric, ...] = tuple(
    Metric(f"category.{name}", name, "bytes", True) for name, _ in CATEGORY_FIELDS
)


@dataclass(frozen=True, slots=True)
class RunProfile:
    """What a run's memory did, in plain numbers (None: not measured in this run)."""

    script: str
    steps: int
    values: Mapping[str, float | None]
    categories_basis: str | None = None
    findings: tuple[Mapping[str, Any], ...] = ()
    series: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    def value(self, key: str) -> float | None:
        return self.values.get(key)

    def to_dict(self) -> dict[str, Any]:
        """The baseline JSON (series left out: a baseline is a few numbers)."""
        return {
            "schema": BASELINE_SCHEMA,
            "script": self.script,
            "steps": self.steps,
            "metrics": dict(self.values),
            "categories_basis": self.categories_basis,
            "findings": [dict(f) for f in self.findings],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunProfile:
        if not isinstance(data, Mapping) or data.get("schema") != BASELINE_SCHEMA:
            raise MemwatchError(f"not a memwatch baseline (expected schema {BASELINE_SCHEMA})")
        raw = data.get("metrics")
        if not isinstance(raw, Mapping):
            raise MemwatchError("baseline has no metrics object")
        values: dict[str, float | None] = {}
        for key, value in raw.items():
            if value is not None and not isinstance(value, (int, float)):
                raise MemwatchError(f"baseline metric {str(key)[:40]!r} is not a number")
            values[str(key)] = value
        findings = data.get("findings") or []
        if not isinstance(findings, list):
            raise MemwatchError("baseline findings must be a list")
        return cls(
            script=str(data.get("script", "")),
            steps=int(data.get("steps", 0) or 0),
            values=values,
            categories_basis=data.get("categories_basis"),
            findings=tuple(dict(f) for f in findings if isinstance(f, Mapping)),
        )


def slope(points: Sequence[tuple[int, int]]) -> float | None:
    """Least-squares bytes per step of (step, bytes) points (None under 2 points)."""
    n = len(points)
    if n < 2:
        return None
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    var = sum((p[0] - mean_x) ** 2 for p in points)
    if var == 0:
        return None
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / var


def _series(steps: Sequence[StepRecord], attr: str) -> tuple[tuple[int, int], ...]:
    return tuple((s.step, v) for s in steps if (v := getattr(s, attr)) is not None)


def _peak_allocated(s: StepRecord) -> int | None:
    values = [v for v in (s.peak_allocated_bytes, s.allocated_bytes) if v is not None]
    return max(values) if values else None


def profile(
    script: str,
    steps: Sequence[StepRecord],
    findings: Iterable[Finding] = (),
    categories: Sequence[MemoryCategories] = (),
    warmup: int = DEFAULT_WARMUP,
) -> RunProfile:
    """The profile of one run (growth is measured after ``warmup`` steps)."""
    later = list(steps[warmup:]) if len(steps) > warmup + 1 else list(steps)
    peaks = [v for s in steps if (v := _peak_allocated(s)) is not None]
    rss = [s.rss_bytes for s in steps if s.rss_bytes is not None]
    durations = sorted(s.duration_s for s in steps)
    values: dict[str, float | None] = {
        "peak_allocated_bytes": max(peaks) if peaks else None,
        "peak_saved_bytes": max(
            (v for s in steps if (v := saved_in_step(s)) is not None), default=None
        ),
        "peak_rss_bytes": max(rss) if rss else None,
        "allocated_growth": slope(_series(later, "allocated_bytes")),
        "saved_growth": slope(_series(later, "saved_bytes")),
        "rss_growth": slope(_series(later, "rss_bytes")),
        "median_step_s": durations[len(durations) // 2] if durations else None,
    }
    basis = None
    if categories:
        peak = peak_categories(categories)
        assert peak is not None
        basis = peak.basis
        for name, attr in CATEGORY_FIELDS:
            values[f"category.{name}"] = getattr(peak, attr)
    return RunProfile(
        script=script,
        steps=len(steps),
        values=values,
        categories_basis=basis,
        findings=tuple(
            {
                "kind": f.kind,
                "severity": f.severity,
                "title": f.title,
                "variable": f.variable,
                "rank": f.rank,
            }
            for f in findings
        ),
        series={
            "allocated": tuple((s.step, v) for s in steps if (v := _peak_allocated(s)) is not None),
            "saved": tuple((s.step, v) for s in steps if (v := saved_in_step(s)) is not None),
        },
    )


# -- diff ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Row:
    """One metric of two runs: A's value, B's value and B's change relative to A."""

    metric: Metric
    a: float | None
    b: float | None

    @property
    def change(self) -> float | None:
        """(B - A) / A, None where undefined (a missing side, or A zero)."""
        if self.a is None or self.b is None or self.a == 0:
            return None
        return (self.b - self.a) / abs(self.a)


@dataclass(frozen=True, slots=True)
class Diff:
    rows: tuple[Row, ...]
    appeared: tuple[Mapping[str, Any], ...]
    disappeared: tuple[Mapping[str, Any], ...]
    diverges_at: int | None  # first aligned step where B's memory leaves A's
    verdict: str


def _finding_id(f: Mapping[str, Any]) -> tuple[Any, ...]:
    return (f.get("kind"), f.get("variable"), f.get("rank"))


def diff(a: RunProfile, b: RunProfile, tolerance: float = DEFAULT_TOLERANCE) -> Diff:
    """Compare B with A, step-aligned where both have per-step series."""
    keys = [
        m
        for m in (*METRICS, *CATEGORY_METRICS)
        if a.value(m.key) is not None or b.value(m.key) is not None
    ]
    rows = tuple(Row(m, a.value(m.key), b.value(m.key)) for m in keys)
    a_ids = {_finding_id(f) for f in a.findings}
    b_ids = {_finding_id(f) for f in b.findings}
    appeared = tuple(f for f in b.findings if _finding_id(f) not in a_ids)
    disappeared = tuple(f for f in a.findings if _finding_id(f) not in b_ids)
    series = "allocated" if a.series.get("allocated") and b.series.get("allocated") else "saved"
    diverges = first_divergence(a.series.get(series, ()), b.series.get(series, ()), tolerance)
    return Diff(
        rows,
        appeared,
        disappeared,
        diverges,
        verdict(rows, appeared, disappeared, diverges, tolerance),
    )


def first_divergence(
    a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]], tolerance: float
) -> int | None:
    """The first step both runs recorded where B differs from A beyond the tolerance."""
    a_at = dict(a)
    for step, value in b:
        base = a_at.get(step)
        if base is None:
            continue
        if abs(value - base) > max(tolerance * max(base, value), PEAK_SLACK):
            return step
    return None


def _pct(change: float) -> str:
    return f"{abs(change) * 100:.0f}%"


def verdict(
    rows: Sequence[Row],
    appeared: Sequence[Mapping[str, Any]],
    disappeared: Sequence[Mapping[str, Any]],
    diverges_at: int | None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> str:
    """One line a person reads first: which way B went, where, and since when."""
    by_key = {r.metric.key: r for r in rows}
    parts: list[str] = []
    peak = by_key.get("peak_allocated_bytes")
    if peak is None or peak.change is None:
        peak = by_key.get("peak_saved_bytes")
    if peak is not None and peak.change is not None and abs(peak.change) > tolerance:
        word = "higher" if peak.change > 0 else "lower"
        text = f"B's {peak.metric.label} is {_pct(peak.change)} {word}"
        moved = [
            r
            for r in rows
            if r.metric.key.startswith("category.") and r.a is not None and r.b is not None
        ]
        if moved:
            delta = (peak.b or 0) - (peak.a or 0)
            biggest = max(moved, key=lambda r: abs((r.b or 0) - (r.a or 0)))
            share = (biggest.b or 0) - (biggest.a or 0)
            if delta and share * delta > 0:
                most = "all" if abs(share) >= 0.9 * abs(delta) else "mostly"
                if abs(share) >= 0.5 * abs(delta):
                    text += f", {most} in {biggest.metric.label}"
        if diverges_at is not None:
            text += f", from step {diverges_at}"
        parts.append(text)
    for key in ("allocated_growth", "saved_growth"):
        row = by_key.get(key)
        if row is None or row.a is None or row.b is None:
            continue
        grew_a, grew_b = row.a > GROWTH_SLACK, row.b > GROWTH_SLACK
        if grew_a and not grew_b:
            parts.append(f"the growth is gone ({_rate(row.a)} -> {_rate(row.b)})")
        elif grew_b and not grew_a:
            parts.append(f"B grows ({_rate(row.a)} -> {_rate(row.b)})")
        elif grew_a and grew_b and row.change is not None and abs(row.change) > tolerance:
            parts.append(f"{row.metric.label} {_rate(row.a)} -> {_rate(row.b)}")
    if disappeared:
        parts.append(f"{len(disappeared)} finding(s) gone: {_kinds(disappeared)}")
    if appeared:
        parts.append(f"{len(appeared)} new finding(s): {_kinds(appeared)}")
    if not parts:
        return f"B matches A within {tolerance * 100:.0f}%"
    return "; ".join(parts)


def _rate(value: float) -> str:
    return f"{format_size(round(value), signed=True)}/step"


def _kinds(findings: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(sorted({str(f.get("kind")) for f in findings}))


# -- check (the CI gate) --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Gate:
    """One gated metric of a run against its baseline: the limit and whether it holds."""

    metric: Metric
    baseline: float | None
    value: float | None
    limit: float | None

    @property
    def ok(self) -> bool:
        if self.limit is None or self.value is None:
            return True
        return self.value <= self.limit


def check(
    run: RunProfile, baseline: RunProfile, tolerance: float = DEFAULT_TOLERANCE
) -> list[Gate]:
    """Every gated metric both sides have, with its limit: baseline × (1 + tolerance),
    plus a small absolute slack (growth near zero, tiny peaks)."""
    gates = []
    for metric in (*METRICS, *CATEGORY_METRICS):
        if not metric.gated:
            continue
        base, value = baseline.value(metric.key), run.value(metric.key)
        if base is None and value is None:
            continue
        limit = None
        if base is not None:
            slack = GROWTH_SLACK if metric.unit == "bytes/step" else PEAK_SLACK
            limit = max(base, 0) * (1 + tolerance) + slack
        gates.append(Gate(metric, base, value, limit))
    return gates


def parse_tolerance(text: str) -> float:
    """``5%`` or ``0.05`` -> 0.05; anything else is bad input."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise MemwatchError(f"bad tolerance {text[:40]!r}: write it like 5% or 0.05") from None
    if not 0 <= value <= 100:
        raise MemwatchError(f"bad tolerance {text[:40]!r}: must be between 0% and 10000%")
    return value


def format_value(metric: Metric, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric.unit == "seconds":
        return f"{value * 1000:.2f} ms"
    if metric.unit == "bytes/step":
        return _rate(value)
    return format_size(round(value))
