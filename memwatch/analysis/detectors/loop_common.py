"""Small pure helpers shared by the training-loop detectors (see docs/detectors-loop.md).

They read typed evidence (``memwatch.evidence``: a ``variable`` field, the user's line in
``location``) and give robust trends, so each detector module stays about its own rule.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, TypeVar

from memwatch.evidence import Observed
from memwatch.records import Location

T = TypeVar("T", bound=Observed[Any])

#: Boundaries of real training steps. The closing partial step ("end") is taken after the
#: script's loop is over (locals gone or kept, caches emptied) and would bend a trend.
TRAINING_BOUNDARIES = frozenset({"optimizer", "manual", "scaler", "forward"})


def site(seen: Observed[Any]) -> tuple[Location | None, str | None]:
    """Where the measurement points in the user's code and the variable named there."""
    variable = getattr(seen.evidence, "variable", None)
    return seen.location, str(variable) if variable else None


def code(text: str | None, fallback: str) -> str:
    """``text`` as inline code for a title or fix, or ``fallback`` when unknown."""
    return f"`{text}`" if text else fallback


def per_step_latest(events: Sequence[T]) -> list[T]:
    """One measurement per step (the last one), in step order."""
    latest: dict[int, T] = {}
    for event in events:
        latest[event.step] = event
    return [latest[s] for s in sorted(latest)]


def theil_sen(xs: Sequence[float], ys: Sequence[float], max_points: int = 64) -> float:
    """Median of pairwise slopes: a trend that one odd point cannot bend.

    At most ``max_points`` evenly spaced points are used, so the cost stays bounded on
    long runs (O(max_points²)).
    """
    n = len(xs)
    if n < 2:
        return 0.0
    if n > max_points:
        idx = [round(i * (n - 1) / (max_points - 1)) for i in range(max_points)]
        xs = [xs[i] for i in idx]
        ys = [ys[i] for i in idx]
        n = max_points
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(n)
        for j in range(i + 1, n)
        if xs[j] != xs[i]
    ]
    return statistics.median(slopes) if slopes else 0.0


def block_medians(values: Sequence[float], blocks: int) -> list[float]:
    """Medians of ``blocks`` consecutive, equally long slices of ``values``."""
    n = len(values)
    blocks = max(1, min(blocks, n))
    out = []
    for b in range(blocks):
        lo = b * n // blocks
        hi = (b + 1) * n // blocks
        out.append(statistics.median(values[lo:hi]))
    return out


def rising_run_start(values: Sequence[float]) -> int:
    """Index where the final strictly rising run of ``values`` starts."""
    i = len(values) - 1
    while i > 0 and values[i] > values[i - 1]:
        i -= 1
    return i
