"""The panel "what holds memory": the names holding tensor bytes at the cursor's step."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.events import Resize
from textual.widgets import Static

from memwatch.plaintext import plain
from memwatch.records import Holder

from ..view import holder_rows, holders_title
from .text import styled


class HoldersPanel(VerticalScroll):
    """A table of holders, largest first, for the snapshot nearest the cursor (the title
    says which step it was taken at). Names and places are plain text, never markup.

    Narrow panels drop the tensor count, then the source location, so the name and the
    size (what a person needs first) keep their room.
    """

    DEFAULT_CSS = """
    HoldersPanel {
        border: round $foreground 30%; border-title-color: $text-accent;
        background: $background; color: $foreground;
    }
    HoldersPanel:focus { border: round $accent; }
    HoldersPanel > Static { width: 1fr; background: $background; color: $foreground; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: tuple[int | None, tuple[Holder, ...]] = (None, ())

    def compose(self) -> ComposeResult:
        yield Static("", id="holders-body")

    def on_mount(self) -> None:
        self.border_title = "what holds memory"

    def on_resize(self, event: Resize) -> None:
        self.show(*self._shown)

    def show(self, step: int | None, holders: tuple[Holder, ...]) -> None:
        self._shown = (step, holders)
        body = self.query_one("#holders-body", Static)
        if step is None:
            self.border_title = "what holds memory"
            body.update(styled("[$text-muted]no steps recorded yet[/]"))
            return
        self.border_title = holders_title(step, holders)
        if not holders:
            body.update(
                styled(
                    "[$text-muted]no holder snapshot in this run yet "
                    "(memwatch records holders when it suspects a leak)[/]"
                )
            )
            return
        width = self.size.width
        table = Table(box=None, expand=True, padding=(0, 1), show_edge=False)
        table.add_column("holder", ratio=3, overflow="ellipsis", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        if width >= 60:
            table.add_column("tensors", justify="right", no_wrap=True)
        if width >= 45:
            table.add_column("where", ratio=2, overflow="ellipsis", no_wrap=True)
        for name, size, tensors, where in holder_rows(holders):
            cells = [Text(plain(name)), Text(size)]
            if width >= 60:
                cells.append(Text(tensors))
            if width >= 45:
                cells.append(Text(plain(where)))
            table.add_row(*cells)
        body.update(table)
