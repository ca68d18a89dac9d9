"""A braille line chart drawn in pure Python: the timeline's picture, as styled runs of text.

Why not plotext (``textual-plotext``)? Measured on this project's machines, plotext's
``build()`` of five series at 160x50 costs 40-55 ms (about 20 ms fixed plus 0.04 ms a
point), which alone exceeds the 50 ms budget of a follow refresh. The picture the
dashboard needs is narrow (line series over a step axis, byte ticks, a cursor column),
and drawing it here costs a few milliseconds.

Series of different quantities (device memory, autograd-saved bytes, host RSS) are drawn
in stacked panes, each with its own y axis fitted to what it shows, over one shared
step axis. Each series is rasterised column by column: the min/max zig-zag of a bucket becomes a
vertical run of braille dots, so a one-step spike stays visible at any zoom. Where two
series share a cell the later one colours it. The result is a grid of ``Run`` s naming a
role (``axis``, ``label``, a series column, blank) that the widget maps to theme styles,
so this module needs no Textual and is tested on its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from .view import (
    CATEGORY_NAMES,
    PANE_OF,
    PANES,
    ChartData,
    Line,
    Pane,
    category_lines,
    nice_ticks,
    short_count,
    short_size,
)

#: Braille dot bit for (x within the cell 0..1, y within the cell 0..3).
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


@dataclass(frozen=True, slots=True)
class Run:
    """Characters drawn in one role; ``cursor`` marks the cursor's column."""

    text: str
    role: str
    cursor: bool = False
    mark: bool = False  # a step the selected finding names


Row = tuple[Run, ...]


def y_range(lines: Sequence[Line], from_zero: bool = False) -> tuple[float, float]:
    """The value range drawn for ``lines``: theirs, padded 5 %, never below zero.

    Fitted to what is shown (the window, the series not hidden), so zooming in on a
    small change makes it fill the pane; ``from_zero`` pins the bottom at 0 (a stack).
    """
    lo = 0.0 if from_zero else min(min(line.ys) for line in lines)
    hi = max(max(line.ys) for line in lines)
    if hi <= lo:
        lo, hi = lo - 1024, hi + 1024
    pad = (hi - lo) * 0.05
    return max(0.0, lo - pad), hi + pad


#: Characters left of the plot: y labels such as ``1023M`` and the axis line. Fixed, so
#: the plot, every pane and the step axis share one width at every terminal size.
Y_AXIS_WIDTH = 6


def pane_heights(count: int, rows: int) -> list[int]:
    """Rows for each of ``count`` stacked panes sharing ``rows`` (earlier ones get extra)."""
    base, extra = divmod(rows, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def draw(
    data: ChartData | None,
    cursor: int | None,
    width: int,
    height: int,
    message: str = "",
    focus: str | None = None,
    marks: Sequence[int] = (),
) -> list[Row]:
    """``height`` rows of at most ``width`` characters picturing ``data``.

    Series are grouped into their panes (``tui.view.PANES``), stacked, each on its own y
    axis; one step axis runs below them all. ``focus`` names the pane of the selected
    finding (its title is marked) and ``marks`` the steps that finding names (tinted in
    that pane, ``▲`` on the step axis).
    """
    if data is None or not (data.lines or data.categories) or width < 16 or height < 4:
        text = message if data is None else "no steps recorded yet"
        return _message(text, width, height)
    lines = [*data.lines, *category_lines(data.categories, data.lo, data.hi)]
    panes = [
        (pane, [line for line in lines if PANE_OF.get(line.column) == pane.name]) for pane in PANES
    ]
    panes = [(pane, lines) for pane, lines in panes if lines]
    rows_left = height - 2  # the step axis and its labels below
    while len(panes) > 1 and rows_left // len(panes) < 2:
        # Too short for every pane: keep the focused one, else the first ones.
        drop = next((i for i in range(len(panes) - 1, -1, -1) if panes[i][0].name != focus), -1)
        panes.pop(drop)
    margin = Y_AXIS_WIDTH
    cols = width - margin
    px_w = cols * 2
    lo, hi = data.lo, max(data.hi, data.lo + 1)

    def px_of(x: float) -> int:
        return round((x - lo) / (hi - lo) * (px_w - 1))

    cursor_col = px_of(cursor) // 2 if cursor is not None and lo <= cursor <= hi else -1
    mark_cols = {px_of(m) // 2 for m in marks if lo <= m <= hi}
    out: list[Row] = []
    for (pane, lines), rows in zip(panes, pane_heights(len(panes), rows_left)):
        focused = pane.name == focus
        marked = mark_cols if focused else ()
        title = _title(pane, lines, focused, data.estimated, cols)
        if rows >= 3:
            # A row of its own for the title: it never hides the top of a series.
            blank = _cells([0] * cols, [""] * cols, 0, cols, cursor_col, marked)
            out.append(
                (
                    Run(" " * (margin - 1), "label"),
                    Run("╷", "axis"),
                    *_label_segments(tuple(blank), title),
                )
            )
            out += _pane(lines, rows - 1, cols, margin, px_of, cursor_col, marked, pane.from_zero)
        else:
            # Too short for that: the title goes where the series leave cells blank.
            out += _pane(lines, rows, cols, margin, px_of, cursor_col, marked, pane.from_zero)
            first = out[-rows]
            out[-rows] = (*first[:2], *_label_segments(first[2:], title))
    if not data.exact:
        note = " preview: sampled steps "
        if cols > len(note) + 4 and len(out) > 1:
            second = out[1]
            out[1] = (*second[:2], *_overlay(second[2:], cols - len(note), note, "label"))
    out.extend(_x_axis(lo, hi, margin, cols, px_of, cursor_col, mark_cols))
    return out


def _title(
    pane: Pane, lines: Sequence[Line], focused: bool, estimated: bool, cols: int
) -> list[tuple[str, str]]:
    """A pane's title as ``(text, role)`` segments.

    The categories pane says that its values are held between the recorded (strided)
    rows and, on a CPU run without a total, estimated; then a coloured key per layer.
    """
    if pane.name != "categories":
        if focused:
            return [(f" {pane.title} ◀ finding ", "focus")]
        return [(f" {pane.title} ", "label")]
    keys: list[tuple[str, str]] = []
    for line in lines:
        keys += [("■", line.column), (CATEGORY_NAMES[line.column] + " ", "label")]
    key_width = sum(len(text) for text, _ in keys)
    est = "estimated · " if estimated else ""
    for head in (
        f" {pane.title} · {est}held between samples ",
        f" by category · {est}held ",
        f" by category{' (est.)' if estimated else ''} ",
    ):
        if len(head) + key_width <= cols:
            break
    return [(head, "label"), *keys]


def _label_segments(runs: tuple[Run, ...], segments: Sequence[tuple[str, str]]) -> list[Run]:
    """Write ``segments`` one after another into the blank cells of ``runs``."""
    out = list(runs)
    at = 0
    for text, role in segments:
        out = _label_blanks(tuple(out), at, text, role)
        at += len(text)
    return out


def _pane(
    lines: Sequence[Line],
    rows: int,
    cols: int,
    margin: int,
    px_of: Callable[[float], int],
    cursor_col: int,
    mark_cols: Collection[int],
    from_zero: bool = False,
) -> list[Row]:
    """``rows`` rows of one pane: its y labels and axis, then its series rasterised."""
    y_lo, y_hi = y_range(lines, from_zero)
    px_h = rows * 4
    y_ticks = nice_ticks(y_lo, y_hi, max(1, rows // 3), binary=True)

    def py_of(y: float) -> float:
        return (y_hi - y) / (y_hi - y_lo) * (px_h - 1)

    bits = [0] * (rows * cols)
    owner = [""] * (rows * cols)
    for line in lines:
        _rasterise(line.xs, line.ys, line.column, px_of, py_of, (cols * 2, px_h, cols), bits, owner)
    tick_rows: dict[int, str] = {}
    for value in y_ticks:
        row = round(py_of(value) / 4 - 0.375)
        if 0 <= row < rows and row not in tick_rows:
            tick_rows[row] = short_size(value)[: margin - 1]
    out: list[Row] = []
    for r in range(rows):
        tick = tick_rows.get(r)
        edge = "┤" if tick else ("╷" if r == 0 else "│")
        runs = [Run((tick or "").rjust(margin - 1), "label"), Run(edge, "axis")]
        runs += _cells(bits, owner, r * cols, cols, cursor_col, mark_cols)
        out.append(tuple(runs))
    return out


def _rasterise(
    xs: tuple[float, ...],
    ys: tuple[float, ...],
    column: str,
    px_of: Callable[[float], int],
    py_of: Callable[[float], float],
    grid: tuple[int, int, int],
    bits: list[int],
    owner: list[str],
) -> None:
    """Set the dots of one polyline: per pixel column, the vertical run it passes through.

    ``grid`` is ``(pixel width, pixel height, cell columns)``; points come in step order.
    """
    px_w, px_h, cols = grid
    spans: dict[int, list[float]] = {}

    def cover(c: int, a: float, b: float) -> None:
        low, high = (a, b) if a <= b else (b, a)
        span = spans.get(c)
        if span is None:
            spans[c] = [low, high]
        else:
            span[0] = min(span[0], low)
            span[1] = max(span[1], high)

    points = [(px_of(x), py_of(y)) for x, y in zip(xs, ys)]
    if len(points) == 1:
        cover(points[0][0], points[0][1], points[0][1])
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x1 < x0:
            (x0, y0), (x1, y1) = (x1, y1), (x0, y0)
        if x1 == x0:
            cover(x0, y0, y1)
            continue
        slope = (y1 - y0) / (x1 - x0)
        for c in range(x0, x1 + 1):
            a = max(c - 0.5, x0)
            b = min(c + 0.5, x1)
            cover(c, y0 + slope * (a - x0), y0 + slope * (b - x0))
    for c, (a, b) in spans.items():
        if not 0 <= c < px_w:
            continue
        top = max(0, min(px_h - 1, round(a)))
        bottom = max(0, min(px_h - 1, round(b)))
        dots = _DOTS[c & 1]
        cell_x = c >> 1
        for py in range(top, bottom + 1):
            index = (py >> 2) * cols + cell_x
            bits[index] |= dots[py & 3]
            owner[index] = column


def _cells(
    bits: list[int],
    owner: list[str],
    start: int,
    cols: int,
    cursor_col: int,
    mark_cols: Collection[int] = (),
) -> list[Run]:
    """One row of the plot as runs of equal role, cursor flag and mark flag."""
    runs: list[Run] = []
    text: list[str] = []
    role, on_cursor, marked = "", False, False
    for c in range(cols):
        b = bits[start + c]
        cell_role = owner[start + c] if b else ""
        cell_cursor = c == cursor_col
        cell_mark = c in mark_cols
        if (cell_role, cell_cursor, cell_mark) != (role, on_cursor, marked) and text:
            runs.append(Run("".join(text), role, on_cursor, marked))
            text = []
        role, on_cursor, marked = cell_role, cell_cursor, cell_mark
        text.append(chr(0x2800 + b) if b else " ")
    if text:
        runs.append(Run("".join(text), role, on_cursor, marked))
    return runs


def _label_blanks(runs: tuple[Run, ...], at: int, text: str, role: str) -> list[Run]:
    """Write ``text`` from column ``at`` into the blank cells of ``runs`` only."""
    cells = [(char, run.role, run.cursor, run.mark) for run in runs for char in run.text]
    for i, char in enumerate(text, at):
        if i < len(cells) and cells[i][0] == " ":
            _, _, cursor, mark = cells[i]
            cells[i] = (char, role, cursor, mark)
    out: list[Run] = []
    for (cell_role, cursor, mark), group in itertools.groupby(cells, key=lambda c: c[1:]):
        out.append(Run("".join(c[0] for c in group), cell_role, cursor, mark))
    return out


def _overlay(runs: tuple[Run, ...], at: int, note: str, role: str = "label") -> list[Run]:
    """Replace the characters from ``at`` with ``note`` (drawn in ``role``)."""
    out: list[Run] = []
    pos = 0
    for run in runs:
        end = pos + len(run.text)
        if end <= at:
            out.append(run)
        elif pos < at:
            out.append(Run(run.text[: at - pos], run.role, run.cursor, run.mark))
        pos = end
    out.append(Run(note, role))
    return out


def _x_axis(
    lo: int,
    hi: int,
    margin: int,
    cols: int,
    px_of: Callable[[float], int],
    cursor_col: int,
    mark_cols: Collection[int] = (),
) -> list[Row]:
    """The axis line with tick marks (``▲`` at marked steps), and step labels that never
    overlap."""
    ticks = [t for t in nice_ticks(lo, hi, max(2, cols // 14)) if t == int(t)]
    line = ["─"] * cols
    labels = [" "] * cols
    free_from = 0
    for tick in ticks:
        c = px_of(tick) // 2
        if not 0 <= c < cols:
            continue
        line[c] = "┬"
        text = short_count(tick)
        start = max(0, min(cols - len(text), c - len(text) // 2))
        if start >= free_from:
            labels[start : start + len(text)] = list(text)
            free_from = start + len(text) + 1
    for c in mark_cols:
        if 0 <= c < cols:
            line[c] = "▲"
    axis = [Run(" " * (margin - 1), "label"), Run("└", "axis")]
    for c, char in enumerate(line):
        role = "focus" if c in mark_cols else "axis"
        cell = Run(char, role, c == cursor_col)
        last = axis[-1]
        if len(axis) > 2 and (last.role, last.cursor) == (role, cell.cursor):
            axis[-1] = Run(last.text + char, role, last.cursor)
        else:
            axis.append(cell)
    return [
        tuple(r for r in axis if r.text),
        (Run(" " * margin, "label"), Run("".join(labels), "label")),
    ]


def _message(text: str, width: int, height: int) -> list[Row]:
    rows: list[Row] = [(Run("", ""),) for _ in range(max(0, height))]
    if rows:
        rows[len(rows) // 2] = (Run(text[:width].center(width), "label"),)
    return rows


def plain(rows: list[Row]) -> str:
    """The chart as plain text (for tests and debugging)."""
    return "\n".join("".join(run.text for run in row).rstrip() for row in rows)
