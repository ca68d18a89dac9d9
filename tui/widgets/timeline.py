"""The per-step timeline: down-sampled series as a braille chart, and the step cursor.

The widget draws only what ``tui.model.RunModel.chart`` handed it (a few hundred points
per series whatever the run length), with ``tui.chart.draw``; moving the cursor inside
the window redraws from the same points without reading the file. Series colours have a
dark and a light variant so each line stays readable on either theme; the legend with
the values at the cursor lives in ``CursorBar``.
"""

from __future__ import annotations

import time
from dataclasses import replace

from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.color import Color
from textual.events import Resize
from textual.message import Message
from textual.widget import Widget

from ..chart import Y_AXIS_WIDTH, draw
from ..view import ChartData

RGB = tuple[int, int, int]

#: Series colours on a dark background, then on a light one (same hues, different lightness).
SERIES_COLORS: dict[str, tuple[RGB, RGB]] = {
    "reserved_bytes": ((150, 160, 190), (95, 105, 140)),
    "allocated_bytes": ((90, 170, 255), (20, 90, 200)),
    "peak_allocated_bytes": ((255, 170, 70), (190, 95, 0)),
    "saved_peak_bytes": ((255, 135, 175), (185, 30, 90)),
    "saved_bytes": ((200, 120, 255), (110, 40, 170)),
    "rss_bytes": ((110, 210, 130), (20, 125, 55)),
    # The stacked categories (their own pane): distinct hues, bottom layer first.
    "cat_parameters": ((120, 200, 230), (0, 110, 150)),
    "cat_gradients": ((240, 210, 90), (150, 110, 0)),
    "cat_optimizer": ((180, 150, 255), (90, 60, 190)),
    "cat_activations": ((255, 135, 175), (185, 30, 90)),
    "cat_other": ((170, 170, 170), (100, 100, 100)),
    # The legend's swatch for the whole stack: its bottom layer's colour.
    "categories": ((120, 200, 230), (0, 110, 150)),
}


def series_color(column: str, dark: bool) -> RGB:
    pair = SERIES_COLORS[column]
    return pair[0] if dark else pair[1]


class Timeline(Widget):
    """Memory per step for the visible window, with the cursor's column highlighted."""

    DEFAULT_CSS = """
    Timeline {
        height: 1fr;
        min-height: 6;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data: ChartData | None = None
        self.cursor: int | None = None
        self.message = "reading the run…"
        #: Series the user switched off (keys 1-7): the y axes fit the others.
        self.hidden: frozenset[str] = frozenset()
        #: The selected finding's pane and the steps it names (highlighted).
        self.focus_pane: str | None = None
        self.marks: tuple[int, ...] = ()
        #: ``(perf_counter at the end of a draw, exact)`` of the last draws, for benchmarks.
        self.draws: list[tuple[float, bool]] = []
        self.draw_count = 0
        #: (wall, CPU) seconds of the last draw.
        self.last_draw_s = (0.0, 0.0)

    class Resized(Message):
        """The plot's width changed: the window must be read again at the new resolution."""

    @property
    def buckets(self) -> int:
        """How many buckets fill the plot: one per character column right of the axis.

        Before the first layout the screen's width stands in for the widget's.
        """
        width = self.size.width or self.app.size.width
        return max(8, width - Y_AXIS_WIDTH)

    def on_resize(self, event: Resize) -> None:
        self.post_message(self.Resized())

    def show(self, data: ChartData | None, cursor: int | None) -> None:
        self.data = data
        self.cursor = cursor
        self.refresh()

    def highlight(self, focus: str | None, marks: tuple[int, ...]) -> None:
        """Mark the selected finding's pane and steps (None, () to clear)."""
        if (focus, marks) != (self.focus_pane, self.marks):
            self.focus_pane, self.marks = focus, marks
            self.refresh()

    def move_cursor(self, cursor: int) -> None:
        if cursor != self.cursor:
            self.cursor = cursor
            self.refresh()

    def render(self) -> RenderResult:
        started, started_cpu = time.perf_counter(), time.thread_time()
        theme = self.app.current_theme
        dark = theme.dark
        foreground = Color.parse(theme.foreground or ("#e0e0e0" if dark else "#202020"))
        background = Color.parse(theme.background or ("#000000" if dark else "#ffffff"))
        cursor_bg = background.blend(foreground, 0.22).rich_color
        mark_bg = background.blend(Color.parse(theme.accent or "#0178d4"), 0.25).rich_color
        bg = background.rich_color
        muted = Style(color=background.blend(foreground, 0.6).rich_color, bgcolor=bg)
        focus = Style(
            color=Color.parse(theme.accent or "#0178d4").rich_color, bgcolor=bg, bold=True
        )
        styles: dict[str, Style] = {
            "": Style(color=foreground.rich_color, bgcolor=bg),
            "label": muted,
            "axis": muted,
            "focus": focus,
        }
        for column in SERIES_COLORS:
            color = Color(*series_color(column, dark)).rich_color
            styles[column] = Style(color=color, bgcolor=bg)
        on_cursor = Style(bgcolor=cursor_bg)
        on_mark = Style(bgcolor=mark_bg)
        data, message = self.data, self.message
        if data is not None and self.hidden and (data.lines or data.categories):
            data = replace(
                data,
                lines=tuple(x for x in data.lines if x.column not in self.hidden),
                categories=() if "categories" in self.hidden else data.categories,
            )
            if not data.lines and not data.categories:
                data, message = None, "every series is hidden: press its number to show it"
        rows = draw(
            data,
            self.cursor,
            self.size.width,
            self.size.height,
            message,
            self.focus_pane,
            self.marks,
        )
        text = Text(no_wrap=True, overflow="crop", end="")
        for i, row in enumerate(rows):
            if i:
                text.append("\n")
            for run in row:
                style = styles.get(run.role, styles[""])
                if run.cursor:
                    style += on_cursor
                elif run.mark:
                    style += on_mark
                text.append(run.text, style)
        done = time.perf_counter()
        self.last_draw_s = (done - started, time.thread_time() - started_cpu)
        if self.data is not None and (self.data.lines or self.data.categories):
            self.draws.append((done, self.data.exact))
            del self.draws[:-64]
            self.draw_count += 1
        return text
