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
        self._tables: tuple[Sequence[str], Sequence[str]] = ((), ())

    def on_resize(self) -> None:
        if self._tables[0]:
            self.show(*self._tables)

    def show(
        self, table: Sequence[str], compact: Sequence[str] = (), error: str | None = None
    ) -> None:
        """The full table where it fits the panel, else the compact one."""
        if error is not None:
            self.border_title = "ranks"
            self.update(Text(plain(error)))
            return
        self._tables = (table, compact)
        room = self.size.width - 2
        fits = not compact or max((len(line) for line in table), default=0) <= room
        shown = table if fits else compact
        self.border_title = f"ranks · {max(0, len(table) - 1)}"
        self.update(Text(plain("\n".join(shown), multiline=True)))
