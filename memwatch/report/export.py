"""``memwatch export``: the per-step table as CSV or JSON, and a self-contained HTML page.

The HTML page is one file to attach to an issue or keep as a CI artifact: the report
(findings with where, how much and the fix), an inline SVG timeline of every recorded
series and of the memory categories (stacked), with each finding's first step marked.
No script, no stylesheet or font from the network, no external reference of any kind:
it opens the same offline. Every string that comes from the run file is escaped.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from memwatch.plaintext import plain
from memwatch.records import (
    CATEGORY_FIELDS,
    STEP_COLUMNS,
    Finding,
    MemoryCategories,
    RunInfo,
    StepRecord,
)
from memwatch.units import format_size

EXPORT_FORMATS = ("csv", "json", "html")
CATEGORY_COLUMNS = (*(attr for _, attr in CATEGORY_FIELDS), "total_bytes", "basis")
#: Points per SVG series: longer runs are bucketed, keeping each bucket's maximum (spikes
#: survive: this is a memory timeline).
MAX_POINTS = 800


def step_rows(
    steps: Sequence[StepRecord], categories: Sequence[MemoryCategories]
) -> tuple[list[str], list[list[Any]]]:
    """The per-step table: the step columns, then the category columns (empty if none)."""
    by_step = {c.step: c for c in categories}
    header = [*STEP_COLUMNS, *(f"category_{c}" for c in CATEGORY_COLUMNS)]
    rows = []
    for s in steps:
        c = by_step.get(s.step)
        extra = (
            [getattr(c, col) for col in CATEGORY_COLUMNS] if c else [None] * len(CATEGORY_COLUMNS)
        )
        rows.append([*s.to_row(), *extra])
    return header, rows


def export_csv(steps: Sequence[StepRecord], categories: Sequence[MemoryCategories]) -> str:
    header, rows = step_rows(steps, categories)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else plain(v) if isinstance(v, str) else v for v in row])
    return out.getvalue()


def export_json(
    info: RunInfo | None,
    steps: Sequence[StepRecord],
    categories: Sequence[MemoryCategories],
    findings: Sequence[Finding],
) -> str:
    header, rows = step_rows(steps, categories)
    data = {
        "schema": "memwatch.export/1",
        "run": info.to_dict() if info is not None else None,
        "columns": header,
        "steps": rows,
        "findings": [f.to_dict() for f in findings],
    }
    return json.dumps(data, indent=1, default=str) + "\n"


# -- HTML -----------------------------------------------------------------------------------------
def _e(value: object) -> str:
    """Plain text (no control characters), then HTML-escaped (quotes too)."""
    return html.escape(plain(value), quote=True)


SERIES: tuple[tuple[str, str, Callable[[StepRecord], float | None], str], ...] = (
    ("tensor memory (allocated)", "#1f77b4", lambda s: s.allocated_bytes, "bytes"),
    ("peak in step", "#d62728", lambda s: s.peak_allocated_bytes, "bytes"),
    ("reserved", "#9467bd", lambda s: s.reserved_bytes, "bytes"),
    ("autograd saved (step end)", "#2ca02c", lambda s: s.saved_bytes, "bytes"),
    ("autograd saved (peak in step)", "#17becf", lambda s: s.saved_peak_bytes, "bytes"),
    ("host RSS", "#8c564b", lambda s: s.rss_bytes, "bytes"),
    ("step time", "#7f7f7f", lambda s: s.duration_s, "seconds"),
)
CATEGORY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#bbbbbb")
W, H, PAD = 760, 150, 40


def _bucket(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    if len(points) <= MAX_POINTS:
        return points
    size = -(-len(points) // MAX_POINTS)
    return [max(points[i : i + size], key=lambda p: p[1]) for i in range(0, len(points), size)]


def _fmt(value: float, unit: str) -> str:
    return f"{value * 1000:.1f} ms" if unit == "seconds" else format_size(round(value))


def _axes(
    first: int, last: int, top: float, unit: str, marks: Sequence[tuple[int, str]]
) -> tuple[list[str], Callable[[float], float], Callable[[float], float]]:
    span = max(1, last - first)

    def x(step: float) -> float:
        return PAD + (step - first) / span * (W - 2 * PAD)

    def y(value: float) -> float:
        return H - 20 - (value / top * (H - 40) if top else 0)

    parts = [
        f'<line x1="{PAD}" y1="{H - 20}" x2="{W - PAD}" y2="{H - 20}" stroke="#999"/>',
        f'<text x="{PAD}" y="{H - 5}" font-size="10">step {first}</text>',
        f'<text x="{W - PAD}" y="{H - 5}" font-size="10" text-anchor="end">step {last}</text>',
        f'<text x="{PAD}" y="14" font-size="10">max {_e(_fmt(top, unit))}</text>',
    ]
    for step, title in marks:
        if first <= step <= last:
            px = f"{x(step):.1f}"
            parts.append(
                f'<line x1="{px}" y1="18" x2="{px}" y2="{H - 20}" stroke="#d62728" '
                f'stroke-dasharray="3,3"><title>{_e(title)}</title></line>'
            )
    return parts, x, y


def _series_svg(
    name: str,
    colour: str,
    points: list[tuple[int, float]],
    unit: str,
    marks: Sequence[tuple[int, str]],
) -> str:
    points = _bucket(points)
    top = max(p[1] for p in points) or 1.0
    parts, x, y = _axes(points[0][0], points[-1][0], top, unit, marks)
    path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
    parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
    return (
        f"<figure><figcaption>{_e(name)}</figcaption>"
        f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">'
        f"<title>{_e(name)}</title>{''.join(parts)}</svg></figure>"
    )


def _categories_svg(
    categories: Sequence[MemoryCategories], marks: Sequence[tuple[int, str]]
) -> str:
    rows = [(c.step, [getattr(c, attr) or 0 for _, attr in CATEGORY_FIELDS]) for c in categories]
    if len(rows) > MAX_POINTS:
        size = -(-len(rows) // MAX_POINTS)
        rows = [max(rows[i : i + size], key=lambda r: sum(r[1])) for i in range(0, len(rows), size)]
    top = max(sum(r[1]) for r in rows) or 1.0
    parts, x, y = _axes(rows[0][0], rows[-1][0], top, "bytes", marks)
    below = [0.0] * len(rows)
    legend = []
    for index, (name, _) in enumerate(CATEGORY_FIELDS):
        above = [b + r[1][index] for b, r in zip(below, rows)]
        upper = " ".join(f"{x(r[0]):.1f},{y(v):.1f}" for r, v in zip(rows, above))
        lower = " ".join(f"{x(r[0]):.1f},{y(v):.1f}" for r, v in reversed(list(zip(rows, below))))
        colour = CATEGORY_COLOURS[index]
        parts.append(
            f'<polygon fill="{colour}" fill-opacity="0.7" stroke="none" '
            f'points="{upper} {lower}"><title>{_e(name)}</title></polygon>'
        )
        legend.append(f'<span style="color:{colour}">&#9632;</span> {_e(name)}')
        below = above
    basis = categories[-1].basis
    return (
        f"<figure><figcaption>memory by category ({_e(basis)}): {' '.join(legend)}"
        f'</figcaption><svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">'
        f"<title>memory by category</title>{''.join(parts)}</svg></figure>"
    )


def export_html(
    info: RunInfo | None,
    steps: Sequence[StepRecord],
    categories: Sequence[MemoryCategories],
    findings: Sequence[Finding],
    report_text: str,
) -> str:
    """The self-contained page (see the module docstring)."""
    script = info.script if info is not None else "run"
    marks = [
        (f.first_step, f"{f.severity} [{f.kind}] {f.title}")
        for f in findings
        if f.first_step is not None
    ]
    figures = []
    for name, colour, get, unit in SERIES:
        points = [(s.step, float(v)) for s in steps if (v := get(s)) is not None]
        if points and any(v for _, v in points):
            figures.append(_series_svg(name, colour, points, unit, marks))
    if categories:
        figures.append(_categories_svg(categories, marks))
    items = []
    for f in findings:
        where = f" at {f.location}" if f.location is not None else ""
        step = f" since step {f.first_step}" if f.first_step is not None else ""
        items.append(
            f"<li><b>{_e(f.severity.upper())} [{_e(f.kind)}]</b> {_e(f.title)}"
            f"<br/><small>{_e(where + step)}</small><p>{_e(f.detail)}</p>"
            f"<p><i>fix:</i> {_e(f.fix)}</p></li>"
        )
    findings_html = f"<ol>{''.join(items)}</ol>" if items else "<p>No findings.</p>"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"/>'
        f"<title>memwatch: {_e(script)}</title>"
        "<style>body{font-family:sans-serif;max-width:820px;margin:1em auto;color:#222}"
        "figure{margin:1em 0}figcaption{font-size:13px;font-weight:bold}"
        "pre{background:#f4f4f4;padding:8px;overflow:auto;font-size:12px}"
        "li p{margin:4px 0}</style></head><body>"
        f"<h1>memwatch: {_e(script)}</h1>"
        f"<h2>Findings</h2>{findings_html}"
        f"<h2>Timeline</h2><p><small>Dashed red lines: the first step of each finding "
        f"(hover for its title).</small></p>{''.join(figures)}"
        f"<h2>Report</h2><pre>{_e_multiline(report_text)}</pre>"
        "</body></html>\n"
    )


def _e_multiline(text: str) -> str:
    return html.escape(plain(text, multiline=True), quote=True)
