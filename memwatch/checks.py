"""The memory checks behind memwatch's pytest marker, fixture and ``memwatch.testing``.

Each check is a pure function ``(steps, findings, **thresholds) -> Failure | None`` of what a
watch recorded, so it can be tested with hand-made records and reused anywhere; the pytest
plugin only decides when to call them and how to report. Their docstrings' first lines are
the marker's help text.

What "memory" means here: the tensor bytes memwatch measures per step, never process RSS
(the host allocator keeps freed memory, so RSS moves for reasons that are not leaks):

* ``allocated_bytes`` / ``peak_allocated_bytes`` where a step has them (CUDA's caching
  allocator, or live tensor bytes tracked on CPU);
* otherwise the bytes autograd saved for backward (``saved_bytes`` at step end,
  ``saved_peak_bytes`` within the step) - what a leaked graph holds, but blind to tensors
  kept without a graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from memwatch.errors import MemwatchError
from memwatch.records import saved_in_step
from memwatch.units import format_size, parse_size

if TYPE_CHECKING:  # records are only annotations here: the pytest plugin imports this module
    from memwatch.records import Finding, StepRecord

#: Steps at the start that growth checks ignore: optimizer state, allocator pools and lazy
#: initialisation appear in the first steps. The same number the detectors use by default.
DEFAULT_WARMUP = 3

#: Growth per step (after warm-up) tolerated by default. Exact tensor counts of a clean
#: loop stay flat; this leaves room for small legitimate growth (detached scalars kept for
#: logging, 512-byte CUDA blocks) and still catches anything that adds up over a long run.
DEFAULT_TOLERANCE = "64KiB"

#: Finding kinds a test fails on by default, at error severity: the autograd-graph leaks,
#: each growing memory without bound in a long run. Detectors grade some kinds by what they
#: saw (one forward with grad and no backward is a warning, graphs piling up an error), so
#: the default stays quiet on the mild cases; a ``forbid`` list fails on any severity.
DEFAULT_FORBID: tuple[str, ...] = (
    "graph-accumulation",
    "retain-graph-leak",
    "graph-retained-in-inference",
)


@dataclass(frozen=True)
class Failure:
    """A check that did not hold: which one, what was measured, and the findings behind it."""

    check: str
    """The check's name (also the marker keyword): ``forbid``, ``max_step_growth`` ..."""
    message: str
    """One line a person reads first: what was measured against which limit."""
    findings: tuple[Finding, ...] = ()
    """The findings that explain the failure (shown with location, variable and fix)."""


@dataclass(frozen=True)
class Measure:
    """The memory numbers of one watched test, as the checks and the summary table see them."""

    metric: str
    """What was measured: ``allocated tensor bytes`` or ``autograd-saved bytes``."""
    steps: int
    """Steps recorded (the partial step closed at the end of the watch included)."""
    judged_steps: int
    """Complete steps after warm-up: the ones growth is measured on."""
    warmup: int
    """Steps at the start left out of the growth measure."""
    growth_per_step: float | None
    """Net change per step from the first to the last judged step (None below 2 steps)."""
    peak: int | None
    """Highest value seen in any step, warm-up included (None without steps)."""

    @property
    def growth_text(self) -> str:
        if self.growth_per_step is None:
            return "n/a"
        return f"{format_size(round(self.growth_per_step), signed=True)}/step"


def _uses_allocator(steps: Sequence[StepRecord]) -> bool:
    return bool(steps) and all(s.allocated_bytes is not None for s in steps)


def measure(steps: Sequence[StepRecord], warmup: int = DEFAULT_WARMUP) -> Measure:
    """Peak and growth per step of tensor memory in ``steps`` (pure)."""
    allocator = _uses_allocator(steps)
    metric = "allocated tensor bytes" if allocator else "autograd-saved bytes"
    recorded = len(steps)
    if not allocator:  # steps whose saved tensors were not counted (sampling) say nothing
        steps = [s for s in steps if s.saved_bytes is not None]
    judged = [s for s in steps if s.step >= warmup and s.boundary != "end"]

    def at_end(s: StepRecord) -> int:
        return (s.allocated_bytes or 0) if allocator else (s.saved_bytes or 0)

    def in_step(s: StepRecord) -> int:
        if allocator:
            return max(s.allocated_bytes or 0, s.peak_allocated_bytes or 0)
        return saved_in_step(s) or 0

    growth = None
    if len(judged) >= 2:
        first, last = judged[0], judged[-1]
        growth = (at_end(last) - at_end(first)) / max(1, last.step - first.step)
    return Measure(
        metric=metric,
        steps=recorded,
        judged_steps=len(judged),
        warmup=warmup,
        growth_per_step=growth,
        peak=max((in_step(s) for s in steps), default=None),
    )


def known_kinds() -> tuple[str, ...]:
    """Every finding kind a detector reports, as the detector registry declares them."""
    from memwatch.analysis.registry import KINDS  # lazy: the pytest plugin imports us early

    return KINDS


def validate_kinds(kinds: Iterable[str] | None) -> tuple[str, ...] | None:
    """``kinds`` as a tuple (None stays None), refusing names no detector reports."""
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = (kinds,)
    result = tuple(kinds)
    known = known_kinds()
    unknown = [k for k in result if k not in known]
    if unknown:
        raise MemwatchError(
            f"unknown finding kind(s) {', '.join(map(repr, unknown))} in forbid; "
            f"known kinds: {', '.join(known)}"
        )
    return result


def forbid(
    steps: Sequence[StepRecord],
    findings: Sequence[Finding],
    *,
    kinds: Iterable[str] | None = None,
) -> Failure | None:
    """Fail when memwatch reports a finding of these kinds (default: graph leaks, errors)."""
    chosen = validate_kinds(kinds)
    if chosen is None:
        bad = tuple(f for f in findings if f.kind in DEFAULT_FORBID and f.severity == "error")
    else:
        bad = tuple(f for f in findings if f.kind in chosen)
    if not bad:
        return None
    names = ", ".join(dict.fromkeys(f.kind for f in bad))
    return Failure("forbid", f"forbidden finding: {names}", bad)


def max_step_growth(
    steps: Sequence[StepRecord],
    findings: Sequence[Finding],
    *,
    limit: str | int = DEFAULT_TOLERANCE,
    warmup: int = DEFAULT_WARMUP,
) -> Failure | None:
    """Fail when tensor memory at step end grows more than this per step after warm-up."""
    limit_bytes = parse_size(limit)
    m = measure(steps, warmup)
    if m.growth_per_step is None:
        return Failure(
            "max_step_growth",
            f"cannot judge growth: {m.judged_steps} complete step(s) after a warm-up of "
            f"{warmup} ({m.steps} recorded); run at least {warmup + 2} steps (steps end at "
            "optimizer.step() or memwatch.step()) or lower warmup",
        )
    if m.growth_per_step <= limit_bytes:
        return None
    explaining = tuple(f for f in findings if f.severity in ("error", "warning"))
    return Failure(
        "max_step_growth",
        f"{m.metric} grew {m.growth_text} over {m.judged_steps} steps after a warm-up of "
        f"{warmup} (limit {format_size(limit_bytes)}/step)",
        explaining,
    )


def max_peak(
    steps: Sequence[StepRecord],
    findings: Sequence[Finding],
    *,
    limit: str | int,
) -> Failure | None:
    """Fail when tensor memory within any step peaks above this size."""
    limit_bytes = parse_size(limit)
    m = measure(steps, 0)
    if m.peak is None:
        return Failure(
            "max_peak",
            "cannot judge the peak: no step was recorded (did the test run anything on torch?)",
        )
    if m.peak <= limit_bytes:
        return None
    return Failure(
        "max_peak",
        f"{m.metric} peaked at {format_size(m.peak)} (limit {format_size(limit_bytes)})",
    )


#: The checks a ``@pytest.mark.memwatch`` keyword turns on, by keyword.
MARKER_CHECKS: dict[str, Callable[..., Failure | None]] = {
    "max_step_growth": max_step_growth,
    "max_peak": max_peak,
    "forbid": forbid,
}


def describe(
    failures: Sequence[Failure], findings: Sequence[Finding], m: Measure, *, brief: bool = False
) -> str:
    """What a person needs to fix a failed check: the checks, then each finding.

    Findings named by a failure come first; any other error or warning follows, since a
    growth failure is often explained by a finding of a kind that was not forbidden.
    ``brief`` gives one line per finding (kind, variable, file:line, growth, fix) for the
    failure message when the full blocks follow in the test's "memwatch" report section.
    """
    from memwatch.report.text import finding_line, finding_lines

    # The first line is what pytest's short summary shows: what failed, nothing else.
    lines = [f"memwatch: {'; '.join(f.message for f in failures)}"]
    lines.append(
        f"  ({', '.join(f.check for f in failures)}; {m.steps} step(s), warm-up {m.warmup}; "
        f"{m.metric}: peak {format_size(m.peak)}, {m.growth_text} after warm-up)"
    )
    named = [finding for failure in failures for finding in failure.findings]
    others = [f for f in findings if f.severity in ("error", "warning")]
    shown = {f.key: f for f in [*named, *others]}  # first place wins; duplicates dropped
    for i, finding in enumerate(shown.values(), 1):
        if brief:
            lines.append(f"  {i}. {finding_line(finding)}")
        else:
            lines.append("")
            lines.extend(finding_lines(finding, i))
    if brief and shown:
        lines.append("(details and step numbers: the 'memwatch' section below)")
    return "\n".join(lines)


def step_lines(steps: Sequence[StepRecord], m: Measure, limit: int = 12) -> list[str]:
    """The measured numbers step by step (first and last steps when there are many)."""
    allocator = m.metric == "allocated tensor bytes"
    head = "at end" if allocator else "saved at end"
    lines = [f"  {'step':>5}  {'boundary':<9}  {head:>12}  {'peak in step':>12}"]
    shown = list(steps)
    if len(shown) > limit:
        shown = [*shown[: limit // 3], *shown[-(limit - limit // 3) :]]
    previous = None
    for s in shown:
        if previous is not None and s.step != previous + 1:
            lines.append(f"  {'...':>5}")
        end = s.allocated_bytes if allocator else s.saved_bytes
        peak = s.peak_allocated_bytes if allocator else s.saved_peak_bytes
        lines.append(
            f"  {s.step:>5}  {s.boundary:<9}  {format_size(end):>12}  {format_size(peak):>12}"
        )
        previous = s.step
    return lines


def summary_line(m: Measure, findings: Sequence[Finding]) -> str:
    """One line for a watched test that passed its checks (the report section's head)."""
    kinds = ", ".join(dict.fromkeys(f.kind for f in findings)) or "no findings"
    return (
        f"memwatch: {m.steps} step(s), warm-up {m.warmup}; {m.metric}: peak "
        f"{format_size(m.peak)}, {m.growth_text} after warm-up; {kinds}"
    )
