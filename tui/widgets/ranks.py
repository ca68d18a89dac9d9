"""Each rank's peaks and growth side by side, above the merged findings of a run directory."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from memwatch.plaintext import plain


class RanksPanel(Static):
    """The per-rank table of ``memwatch report RUN_DIR`` (same numbers, same columns)."""

    DEFAULT_CSS = """
    RanksPanel {
        height: auto; max-height: 8; border: round $foreground 30%;
        border-title-color: $text-accent; background: $background; color: $foreground;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def on_mount(self) -> None:
        self.border_title = "ranks · reading…"

    def show(self, table: Sequence[str], error: str | None = None) -> None:
        if error is not None:
            self.border_title = "ranks"
            self.update(Text(plain(error)))
            return
        self.border_title = f"ranks · {max(0, len(table) - 1)}"
        self.update(Text(plain("\n".join(table), multiline=True)))
