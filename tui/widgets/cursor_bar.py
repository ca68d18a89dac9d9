"""One line under the timeline: the cursor's step and each series' value there (the legend)."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from memwatch.records import CATEGORY_FIELDS, MemoryCategories, StepRecord

from ..view import SERIES_NAMES, Viewport, cursor_values, short_size
from .text import styled
from .timeline import series_color


class CursorBar(Static):
    """Doubles as the chart's legend: a coloured swatch per series, then its value.

    Each series is numbered: its number key hides or shows it. When the long form does
    not fit it uses short labels and sizes (``alloc 1.2G``), then numbers and values only
    (``2■1.2G``), so every series fits in 80 columns. Hidden series show as an empty box.
    While the values of a new cursor step are being read, the previous ones stay, dimmed
    (no flash of blanks).
    """

    DEFAULT_CSS = """
    CursorBar {
        height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis;
        background: $background; color: $foreground;
    }
    """

    def show(
        self,
        vp: Viewport | None,
        record: StepRecord | None,
        columns: tuple[str, ...],
        hidden: frozenset[str] = frozenset(),
        stale: bool = False,
        categories: MemoryCategories | None = None,
    ) -> None:
        if vp is None:
            self.update("")
            return
        room = self.size.width - 2
        for form in ("wide", "short", "tiny"):
            parts = self._parts(vp, record, columns, hidden, form, stale, categories)
            line = Content(" " if form == "tiny" else "  ").join(parts)
            if form == "tiny" or len(line.plain) <= room:
                break
        self.update(line)

    def _parts(
        self,
        vp: Viewport,
        record: StepRecord | None,
        columns: tuple[str, ...],
        hidden: frozenset[str],
        form: str,
        stale: bool,
        categories: MemoryCategories | None = None,
    ) -> list[Content]:
        """The bar's parts in ``form``: ``wide`` (long names and sizes), ``short`` (short
        ones), ``tiny`` (number, swatch and value only: six CUDA series in 80 columns)."""
        wide = form == "wide"
        dark = self.app.current_theme.dark
        step = f"▶ step {vp.cursor:,}" if wide else f"▶ {vp.cursor:,}"
        parts = [styled("[b]$step[/b]", step=step)]
        if record is not None and record.step != vp.cursor and not stale:
            parts[0] += styled(" [$text-muted](≤$at)[/]", at=f"{record.step:,}")
        value_style = "$text-muted" if stale else "b"
        series = [c for c in columns if c != "categories"]
        entries = cursor_values(record, series)
        if "categories" in columns:
            entries.append(category_entry(categories, vp.cursor, wide))
        for n, (column, short, short_value, long_value) in enumerate(entries, 1):
            r, g, b = series_color(column, dark)
            label = SERIES_NAMES[column][0] if wide else short
            if form == "tiny":
                label = ""
            value = long_value if wide else short_value
            if column in hidden:
                parts.append(styled("[$text-muted]$n□ $label[/]", n=n, label=label or short))
            else:
                parts.append(
                    styled(
                        f"[$text-muted]$n[/][rgb({r},{g},{b})]■[/]"
                        + (" $label " if label else "")
                        + f"[{value_style}]$value[/]",
                        n=n,
                        label=label,
                        value=value,
                    )
                )
        if not vp.whole:
            times = f"{vp.zoom:.0f}×" if vp.zoom >= 10 else f"{vp.zoom:.1f}×"
            window = f"steps {vp.lo:,}–{vp.hi:,} " if wide else ""
            parts.append(styled("[$text-muted]$zoom[/]", zoom=window + times))
        return parts


#: Layer names in the legend's wide form (each layer's value follows its name).
_ABBREV = {
    "parameters": "par",
    "gradients": "grad",
    "optimizer": "opt",
    "activations": "act",
    "other": "oth",
}


def category_entry(
    row: MemoryCategories | None, cursor: int, wide: bool
) -> tuple[str, str, str, str]:
    """The legend's entry for the category stack at the cursor: its total, and in the wide
    form each layer; ``≤N`` names the recorded row held at the cursor, ``est.`` an estimate."""
    if row is None:
        return ("categories", "cat", "-", "-")
    layers = [(name, getattr(row, field)) for name, field in CATEGORY_FIELDS]
    known = [(name, value) for name, value in layers if value is not None]
    total = sum(value for _, value in known)
    notes = []
    if row.step != cursor:
        notes.append(f"≤{row.step:,}")
    if row.basis == "estimated":
        notes.append("est.")
    note = f" ({', '.join(notes)})" if notes else ""
    if wide:
        layers_text = " ".join(f"{_ABBREV[name]} {short_size(value)}" for name, value in known)
        inner = ", ".join([layers_text, *notes])
        return ("categories", "cat", short_size(total) + note, f"{short_size(total)} ({inner})")
    return ("categories", "cat", short_size(total) + note, short_size(total) + note)
