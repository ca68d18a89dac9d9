"""What the dashboard shows, as pure functions of records: no Textual, no I/O.

Keeping the window arithmetic (cursor, zoom, pan, follow), the down-sampled chart series
and the text of every panel here lets them be tested with hand-made records, and keeps
the widgets thin: they only style what these functions decide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from memwatch.records import CATEGORY_FIELDS, Finding, Holder, MemoryCategories, RunInfo, StepRecord
from memwatch.units import format_size

from .feed import SERIES_COLUMNS, Block, Values

#: Long and short names of each series (short ones fit the 80-column cursor bar).
SERIES_NAMES: dict[str, tuple[str, str]] = {
    "reserved_bytes": ("reserved", "resv"),
    "allocated_bytes": ("allocated", "alloc"),
    "peak_allocated_bytes": ("peak in step", "peak"),
    "saved_peak_bytes": ("saved peak in step", "svpk"),
    "saved_bytes": ("saved at step end", "saved"),
    "rss_bytes": ("RSS", "rss"),
    "categories": ("cat", "cat"),
}

#: The stacked category series (bottom first): the drawn line of ``cat_gradients`` is
#: parameters + gradients, and so on up to ``cat_other``, the step's total.
CATEGORY_COLUMNS: tuple[str, ...] = tuple(f"cat_{name}" for name, _ in CATEGORY_FIELDS)

#: Short names of the categories for the pane's key and the legend.
CATEGORY_NAMES: dict[str, str] = {
    "cat_parameters": "param",
    "cat_gradients": "grad",
    "cat_optimizer": "optim",
    "cat_activations": "activ",
    "cat_other": "other",
}


@dataclass(frozen=True, slots=True)
class Pane:
    """One band of the timeline: series of one quantity, drawn on their own y axis.

    Device memory, autograd-saved bytes and host RSS differ by orders of magnitude (300 MiB
    of RSS from torch alone next to a 16 MiB graph leak): on one axis the smaller ones
    are a flat line. Each pane fits its axis to what it shows in the window.
    """

    name: str
    title: str
    columns: tuple[str, ...]
    #: The y axis starts at 0 (a stack's layers are read as heights from the bottom).
    from_zero: bool = False


PANES: tuple[Pane, ...] = (
    Pane("device", "device memory", ("reserved_bytes", "allocated_bytes", "peak_allocated_bytes")),
    Pane("autograd", "autograd saved", ("saved_peak_bytes", "saved_bytes")),
    Pane("host", "host RSS", ("rss_bytes",)),
    Pane("categories", "memory by category", CATEGORY_COLUMNS, from_zero=True),
)

PANE_OF: dict[str, str] = {c: pane.name for pane in PANES for c in pane.columns}
PANE_OF["categories"] = "categories"  # the legend's one entry for the whole stack

#: Finding kinds whose evidence is autograd-saved memory, and host memory; the rest are
#: about device memory (drawn on the autograd pane when the run has no device series).
_AUTOGRAD_KINDS = ("graph-", "retain-graph", "microbatch-graph")
_HOST_KINDS = ("host-memory",)


def finding_pane(finding: Finding, shown: Sequence[str]) -> str | None:
    """The pane (of those ``shown``) that pictures ``finding``'s evidence, if any."""
    if finding.kind.startswith(_HOST_KINDS):
        want = ["host"]
    elif finding.kind.startswith(_AUTOGRAD_KINDS):
        want = ["autograd"]
    else:
        want = ["device", "autograd"]
    return next((p for p in want if p in shown), None)


def finding_steps(finding: Finding, limit: int = 256) -> tuple[int, ...]:
    """The steps a finding names: its first step and its evidence's ``steps`` list."""
    steps = set()
    if finding.first_step is not None:
        steps.add(finding.first_step)
    listed = finding.evidence.get("steps") if isinstance(finding.evidence, Mapping) else None
    if isinstance(listed, list):
        steps.update(s for s in listed[:limit] if isinstance(s, int) and not isinstance(s, bool))
    return tuple(sorted(steps))


def step_count(first: int | None, last: int | None) -> str:
    """``60 steps`` for steps 0..59 (as the report counts them); ``no steps yet``."""
    if first is None or last is None:
        return "no steps yet"
    count = last - first + 1
    return f"{count:,} step" + ("" if count == 1 else "s")


#: The narrowest window zoom goes down to, in steps.
MIN_SPAN = 8


# -- the window over the steps -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Viewport:
    """The recorded steps ``first..last``, the visible window ``lo..hi`` and the cursor.

    ``follow`` keeps the newest step under the cursor and in view as a live run grows
    (like ``tail -f``); moving the cursor back turns it off, ``End`` turns it on again.
    """

    first: int
    last: int
    lo: int
    hi: int
    cursor: int
    follow: bool = False

    @property
    def span(self) -> int:
        return self.hi - self.lo + 1

    @property
    def whole(self) -> bool:
        """Whether the window shows the whole run."""
        return self.lo <= self.first and self.hi >= self.last

    @property
    def zoom(self) -> float:
        return (self.last - self.first + 1) / self.span


def initial_viewport(first: int, last: int, follow: bool) -> Viewport:
    """The whole run, cursor on the newest step."""
    return Viewport(first, last, first, last, last, follow)


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))


def _place(vp: Viewport, lo: int, span: int) -> Viewport:
    """Window of ``span`` steps starting near ``lo``, kept inside the run."""
    total = vp.last - vp.first + 1
    span = _clamp(span, min(MIN_SPAN, total), total)
    lo = _clamp(lo, vp.first, vp.last - span + 1)
    return replace(vp, lo=lo, hi=lo + span - 1)


def grow(vp: Viewport, first: int, last: int) -> Viewport:
    """New steps were recorded: extend a whole-run window, slide a followed one."""
    if last == vp.last and first == vp.first:
        return vp
    grown = replace(vp, first=first, last=last)
    if vp.whole:
        grown = replace(grown, lo=first, hi=last)
    elif vp.follow:
        grown = _place(grown, last - vp.span + 1, vp.span)
    if vp.follow:
        grown = replace(grown, cursor=last)
    return replace(grown, cursor=_clamp(grown.cursor, first, last))


def stride(vp: Viewport, buckets: int) -> int:
    """Steps per screen column: how far one cursor key press moves."""
    return max(1, vp.span // max(1, buckets))


def move_cursor(vp: Viewport, delta: int) -> Viewport:
    """Move the cursor; the window pans when the cursor leaves it. Moving back unfollows."""
    cursor = _clamp(vp.cursor + delta, vp.first, vp.last)
    moved = replace(vp, cursor=cursor, follow=vp.follow and delta >= 0)
    return _show(moved)


def jump(vp: Viewport, step: int, follow: bool = False) -> Viewport:
    """Put the cursor on ``step`` (e.g. a finding's first step), centring it if off screen."""
    cursor = _clamp(step, vp.first, vp.last)
    moved = replace(vp, cursor=cursor, follow=follow)
    if moved.lo <= cursor <= moved.hi:
        return moved
    return _place(moved, cursor - vp.span // 2, vp.span)


def _show(vp: Viewport) -> Viewport:
    if vp.cursor < vp.lo:
        return _place(vp, vp.cursor, vp.span)
    if vp.cursor > vp.hi:
        return _place(vp, vp.cursor - vp.span + 1, vp.span)
    return vp


def zoom(vp: Viewport, factor: float) -> Viewport:
    """Scale the window by ``factor`` (0.5 zooms in) around the cursor."""
    span = max(1, round(vp.span * factor))
    offset = (vp.cursor - vp.lo) / max(1, vp.span - 1)  # keep the cursor's screen position
    zoomed = _place(vp, vp.cursor - round(offset * (span - 1)), span)
    return replace(zoomed, cursor=_clamp(vp.cursor, zoomed.lo, zoomed.hi))


def pan(vp: Viewport, delta: int) -> Viewport:
    """Shift the window by ``delta`` steps, carrying the cursor along."""
    moved = _place(vp, vp.lo + delta, vp.span)
    cursor = _clamp(vp.cursor + (moved.lo - vp.lo), moved.lo, moved.hi)
    return replace(moved, cursor=cursor, follow=vp.follow and delta >= 0)


def whole_run(vp: Viewport) -> Viewport:
    return replace(vp, lo=vp.first, hi=vp.last)


# -- the timeline ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One series as plot points: two per bucket (its min and its max) so spikes survive."""

    column: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ChartData:
    """What the timeline draws for the window ``lo..hi``.

    ``exact`` is False for the quick preview drawn from sampled steps while the min/max
    index of a long run is still being read.
    """

    lo: int
    hi: int
    lines: tuple[Line, ...]
    exact: bool = True
    #: Memory by category in the window (recorded on a stride; empty for runs without).
    categories: tuple[MemoryCategories, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The legend's entries: each series, then ``categories`` (one key for the stack)."""
        lines = tuple(line.column for line in self.lines)
        return (*lines, "categories") if self.categories else lines

    @property
    def estimated(self) -> bool:
        """Whether any category row in the window is an estimate (CPU without a total)."""
        return any(row.basis == "estimated" for row in self.categories)


def category_lines(rows: Sequence[MemoryCategories], lo: int, hi: int) -> list[Line]:
    """The stacked categories as step-held lines, bottom (parameters) first.

    Categories are recorded on a stride (every step at first, then every few): each
    recorded value is held flat until the next recorded row, where the line steps, and
    the last row is drawn at its own step only: nothing is drawn past what was recorded.
    A category never recorded (``other`` on a CPU run without a total) is left out.
    """
    rows = [r for r in rows if r.step <= hi]
    if not rows:
        return []
    out: list[Line] = []
    totals = [0] * len(rows)
    for (_, field), column in zip(CATEGORY_FIELDS, CATEGORY_COLUMNS):
        values = [getattr(r, field) for r in rows]
        if all(v is None for v in values):
            continue
        totals = [t + (v or 0) for t, v in zip(totals, values)]
        xs: list[float] = []
        ys: list[float] = []
        for i, row in enumerate(rows):
            x = float(max(lo, row.step))
            if i:
                xs.append(x)
                ys.append(ys[-1])  # held up to this row's step
            xs.append(x)
            ys.append(float(totals[i]))
        out.append(Line(column, tuple(xs), tuple(ys)))
    return out


def categories_at(rows: Sequence[MemoryCategories], step: int) -> MemoryCategories | None:
    """The category row in force at ``step``: the last one recorded at or before it."""
    found = None
    for row in rows:
        if row.step > step:
            break
        found = row
    return found


def chart_from_blocks(
    blocks: Sequence[Block],
    lo: int,
    hi: int,
    exact: bool = True,
    categories: tuple[MemoryCategories, ...] = (),
) -> ChartData:
    """Plot points for each series with data: per block its min then max (or max then min).

    The order of the pair follows the previous point, so the line zig-zags through each
    bucket's range instead of crossing itself; a series never measured (None throughout,
    like CUDA fields on a CPU run) is left out.
    """
    lines = []
    for i, column in enumerate(SERIES_COLUMNS):
        xs: list[float] = []
        ys: list[float] = []
        for block in blocks:
            low, high = block.lows[i], block.highs[i]
            if low is None or high is None or block.count == 0:
                continue
            x = float(_clamp((block.start + block.stop - 1) // 2, lo, hi))
            if low == high:
                xs.append(x)
                ys.append(float(low))
                continue
            prev = ys[-1] if ys else float(low)
            pair = (low, high) if abs(prev - low) <= abs(prev - high) else (high, low)
            xs.extend((x, x))
            ys.extend((float(pair[0]), float(pair[1])))
        if ys:
            lines.append(Line(column, tuple(xs), tuple(ys)))
    return ChartData(lo, hi, tuple(lines), exact, categories)


def blocks_from_samples(samples: Iterable[tuple[int, Values]]) -> list[Block]:
    """Single-step blocks from sampled rows (for the preview)."""
    return [Block(step, step + 1, 1, values, values) for step, values in samples]


def nice_ticks(lo: float, hi: float, count: int, binary: bool = False) -> list[float]:
    """About ``count`` round tick values in ``lo..hi``: 1-2-5 steps, or powers of two."""
    if hi <= lo or count < 1:
        return [lo]
    raw = (hi - lo) / count
    if binary:
        step = float(2 ** max(0, round(math.log2(max(raw, 1.0)))))
    else:
        exp = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
        step = next((m * exp for m in (1, 2, 5, 10) if m * exp >= raw), 10 * exp)
        step = max(step, 1.0)
    start = math.ceil(lo / step) * step
    ticks = []
    value = start
    while value <= hi + 1e-9:
        ticks.append(value)
        value += step
    return ticks or [lo]


def short_size(num_bytes: float | None) -> str:
    """Compact binary size for narrow columns: ``512B``, ``95M``, ``1.2G`` (``-`` for None)."""
    if num_bytes is None:
        return "-"
    value = float(num_bytes)
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            if unit == "B":
                return f"{sign}{int(value)}B"
            return f"{sign}{value:.1f}{unit}" if value < 10 else f"{sign}{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def short_count(n: float) -> str:
    """Compact step number for axis ticks: ``950``, ``12k``, ``1.5M``."""
    value = abs(n)
    sign = "-" if n < 0 else ""
    if value < 10_000:
        return f"{sign}{int(value)}"
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if value >= scale:
            scaled = value / scale
            text = f"{scaled:.1f}".rstrip("0").rstrip(".") if scaled < 100 else f"{scaled:.0f}"
            return f"{sign}{text}{unit}"
    return f"{sign}{int(value)}"  # pragma: no cover - unreachable


# -- the header and the cursor bar -------------------------------------------------------


def run_title(info: RunInfo) -> str:
    """``train.py --lr 0.1``: the command as the user typed it."""
    return " ".join([info.script, *info.argv[1:]]) if info.argv else info.script


def device_text(info: RunInfo) -> str:
    parts = [info.device_type]
    if info.device_name and info.device_name != info.device_type:
        parts.append(info.device_name)
    if info.device_total_bytes:
        parts.append(format_size(info.device_total_bytes))
    text = " ".join(parts[:2]) + (f" ({parts[2]})" if len(parts) > 2 else "")
    if info.world_size:
        text += f" · rank {info.rank}/{info.world_size}"
    return text


def format_elapsed(seconds: float) -> str:
    """``45s``, ``12:03``, ``1:02:03``, ``3d 1:02:03``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    if minutes:
        return f"{minutes}:{secs:02d}"
    return f"{secs}s"


@dataclass(frozen=True, slots=True)
class RunState:
    """Whether the run is recording: ``live``, ``finished`` or ``stopped`` (killed writer)."""

    state: str
    elapsed_s: float
    exit_status: int | None = None

    @property
    def text(self) -> str:
        elapsed = format_elapsed(self.elapsed_s)
        if self.state == "live":
            return f"● live {elapsed}"
        if self.state == "finished":
            status = "" if self.exit_status in (None, 0) else f", exit {self.exit_status}"
            return f"■ finished in {elapsed}{status}"
        return f"◆ stopped after {elapsed} (no end recorded)"


def run_state(info: RunInfo, alive: bool | None, now: float, last_seen: float | None) -> RunState:
    """How the run stands: ``alive`` comes from ``memwatch.store.liveness.writer_alive``.

    A writer that died without recording its end (``kill -9``) shows as stopped; its
    elapsed time runs to the last recorded step, not to now.
    """
    if info.ended_at is not None:
        return RunState("finished", info.ended_at - info.started_at, info.exit_status)
    if alive is False:
        end = last_seen if last_seen is not None else info.started_at
        return RunState("stopped", end - info.started_at)
    return RunState("live", now - info.started_at)


def cursor_values(
    record: StepRecord | None, columns: Sequence[str]
) -> list[tuple[str, str, str, str]]:
    """``(column, short label, short value, long value)`` of each drawn series at the cursor."""
    out = []
    for column in columns:
        value = getattr(record, column) if record is not None else None
        short_label = SERIES_NAMES[column][1]
        out.append((column, short_label, short_size(value), format_size(value)))
    return out


# -- findings ----------------------------------------------------------------------------

SEVERITY_BADGE = {"error": "E", "warning": "W", "info": "i"}


def finding_summary(finding: Finding) -> str:
    """``error · graph-accumulation · from step 3``: the line under a finding's title."""
    parts = [finding.severity, finding.kind]
    if finding.first_step is not None:
        parts.append(f"from step {finding.first_step:,}")
    if finding.rank is not None:
        parts.append(f"rank {finding.rank}")
    return " · ".join(parts)


def finding_facts(finding: Finding) -> list[tuple[str, str]]:
    """The measured facts of a finding, label then value, in reading order."""
    facts = []
    if finding.location is not None:
        facts.append(("where", str(finding.location)))
    if finding.variable:
        facts.append(("variable", finding.variable))
    if finding.bytes is not None:
        facts.append(("holds", format_size(finding.bytes)))
    if finding.growth_per_step_bytes is not None:
        facts.append(("growth", f"{format_size(finding.growth_per_step_bytes, signed=True)}/step"))
    return facts


def evidence_rows(evidence: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Evidence as label/value text: sizes for keys naming bytes, short lists, rounded floats."""
    rows = []
    for key, value in evidence.items():
        rows.append((key, _evidence_value(key, value)))
    return rows


def _evidence_value(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int | float) and "bytes" in key:
        return format_size(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        shown = ", ".join(_evidence_value(key, v) for v in value[:8])
        return f"[{shown}{', …' if len(value) > 8 else ''}]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_evidence_value(str(k), v)}" for k, v in list(value.items())[:8])
    return str(value)


# -- what holds memory -------------------------------------------------------------------


def holder_rows(holders: Sequence[Holder], limit: int = 50) -> list[tuple[str, str, str, str]]:
    """``(name, size, tensors, where)`` for the largest holders first."""
    rows = []
    for holder in sorted(holders, key=lambda h: -h.bytes)[:limit]:
        where = (
            f"{Path(holder.location.file).name}:{holder.location.line}" if holder.location else ""
        )
        rows.append((holder.name, format_size(holder.bytes), f"{holder.tensors:,}", where))
    return rows


def holders_title(step: int, holders: Sequence[Holder]) -> str:
    """Panel title: which snapshot is shown (the one nearest the cursor at ``step``) and the
    bytes it holds: ``holders at step 150 (nearest to 127) · 800 MiB``."""
    if not holders:
        return "holders · no snapshot yet"
    at = holders[0].step
    nearest = "" if at == step else f" (nearest to {step:,})"
    total = format_size(sum(h.bytes for h in holders))
    return f"holders at step {at:,}{nearest} · {total}"
