"""One line under the timeline: the cursor's step and each series' value there (the legend)."""

from __future__ import annotations

from textual.content import Content
from textual.markup import escape
from textual.widgets import Static

from memwatch.records import StepRecord

from ..view import SERIES_NAMES, Viewport, cursor_values
from .timeline import series_color


class CursorBar(Static):
    """Doubles as the chart's legend: a coloured swatch per series, then its value.

    When the long form does not fit it uses short labels and sizes (``alloc 1.2G``), so
    all five series and the zoom factor fit in 80 columns. Series hidden with keys 1-5
    show as an empty box.
    """

    DEFAULT_CSS = """
    CursorBar { height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(
        self,
        vp: Viewport | None,
        record: StepRecord | None,
        columns: tuple[str, ...],
        hidden: frozenset[str] = frozenset(),
    ) -> None:
        if vp is None:
            self.update("")
            return
        room = self.size.width - 2
        for wide in (True, False):
            parts = self._parts(vp, record, columns, hidden, wide)
            if not wide or len(Content.from_markup("  ".join(parts)).plain) <= room:
                break
        self.update("  ".join(parts))

    def _parts(
        self,
        vp: Viewport,
        record: StepRecord | None,
        columns: tuple[str, ...],
        hidden: frozenset[str],
        wide: bool,
    ) -> list[str]:
        dark = self.app.current_theme.dark
        parts = [f"[b]▶ step {vp.cursor:,}[/b]" if wide else f"[b]▶ {vp.cursor:,}[/b]"]
        if record is not None and record.step != vp.cursor:
            parts[0] += f" [$text-muted](≤{record.step:,})[/]"
        for column, short, short_value, long_value in cursor_values(record, columns):
            r, g, b = series_color(column, dark)
            label = SERIES_NAMES[column][0] if wide else short
            value = long_value if wide else short_value
            if column in hidden:
                parts.append(f"[$text-muted]□ {escape(label)}[/]")
            else:
                parts.append(f"[rgb({r},{g},{b})]■[/] {escape(label)} [b]{escape(value)}[/b]")
        if not vp.whole:
            times = f"{vp.zoom:.0f}×" if vp.zoom >= 10 else f"{vp.zoom:.1f}×"
            window = f"steps {vp.lo:,}–{vp.hi:,} " if wide else ""
            parts.append(f"[$text-muted]{window}{times}[/]")
        return parts
