"""The tail of the training script's output, for ``memwatch run --live``.

The script writes to a log file (its output would corrupt the dashboard's screen); this
pane shows the last lines, which the refresh worker reads (``tui.logtail``).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from memwatch.plaintext import plain


class LogPane(Static):
    """The newest lines of the script's output; ``l`` shows it in place of the panels below
    the timeline (``.-log`` on the screen, see ``memwatch.tcss``)."""

    DEFAULT_CSS = """
    LogPane {
        height: 1fr; border: round $foreground 30%; border-title-color: $text-accent;
        display: none; text-wrap: nowrap; text-overflow: ellipsis;
        background: $background; color: $foreground;
    }
    """

    def __init__(self, path: Path, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.path = path

    def on_mount(self) -> None:
        self.border_title = Text(f"output · {plain(self.path)}")

    def show(self, tail: str) -> None:
        height = max(1, self.size.height - 2)
        shown = tail.splitlines()[-height:] if tail else ["(no output yet)"]
        self.update(Text(plain("\n".join(shown), multiline=True)))
