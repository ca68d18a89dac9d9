"""Screens over the dashboard: key help, the live-run quit question, and open errors."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Static

#: ``(keys, what they do)``: the single source for the help screen.
KEYS: tuple[tuple[str, str], ...] = (
    ("← →", "move the step cursor by one column"),
    ("shift+← →", "move the cursor by ten columns"),
    ("home / end", "first step / newest step (end follows)"),
    ("+ / -", "zoom in / out around the cursor"),
    ("[ / ]", "pan the window by half its width"),
    ("0", "show the whole run"),
    ("1 … 5", "hide / show a series (legend order)"),
    ("f", "follow: newest step under the cursor"),
    ("↑ ↓", "choose a finding; its detail shows"),
    ("enter", "cursor to the finding's first step"),
    ("tab", "next panel (findings, holders, detail)"),
    ("r", "next rank of a multi-rank run"),
    ("l", "show / hide the script's output (--live)"),
    ("t", "dark / light colours"),
    ("?", "this help"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    """Every key binding and what it does; any of escape, ``?`` or ``q`` closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss_help", "Close"),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: auto; max-width: 90%; height: auto; max-height: 90%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    HelpScreen Static { width: auto; }
    """

    def compose(self) -> ComposeResult:
        width = max(len(k) for k, _ in KEYS)
        lines = ["[b]memwatch dashboard keys[/b]", ""]
        lines += [f"[$text-accent b]{escape(k):>{width}}[/]  {escape(v)}" for k, v in KEYS]
        lines += ["", "[$text-muted]escape closes this help[/]"]
        with Vertical():
            yield Static("\n".join(lines))

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class QuitLiveScreen(ModalScreen[str | None]):
    """Asked when quitting while the training still runs: never stop it silently.

    Dismisses with ``"leave"``, ``"stop"``, or None (stay in the dashboard).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "choose('leave')", "Leave running"),
        Binding("s", "choose('stop')", "Stop it"),
        Binding("escape", "choose(None)", "Cancel"),
    ]

    DEFAULT_CSS = """
    QuitLiveScreen { align: center middle; }
    QuitLiveScreen > Vertical {
        width: 64; max-width: 95%; height: auto; border: thick $warning;
        background: $surface; padding: 1 2;
    }
    QuitLiveScreen Horizontal { height: auto; margin-top: 1; }
    QuitLiveScreen Button { margin-right: 1; }
    """

    def __init__(self, pid: int, run_path: str) -> None:
        super().__init__()
        self.pid = pid
        self.run_path = run_path

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                f"[b]The training is still running[/b] (pid {self.pid}).\n"
                f"It records to [$text-accent]{escape(self.run_path)}[/].\n\n"
                "Leave it running in the background, or stop it?"
            )
            with Horizontal():
                yield Button("Leave it running (l)", id="leave", variant="primary")
                yield Button("Stop it (s)", id="stop", variant="error")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)


class ErrorScreen(ModalScreen[None]):
    """A run that cannot be read: one clear line, and how to leave."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q,escape,enter", "app.quit_dashboard", "Quit"),
    ]

    DEFAULT_CSS = """
    ErrorScreen { align: center middle; }
    ErrorScreen > Vertical {
        width: auto; max-width: 90%; height: auto; border: thick $error;
        background: $surface; padding: 1 2;
    }
    ErrorScreen Static { width: auto; }
    """

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                f"[$text-error b]cannot open the run[/]\n\n{escape(self.message)}\n\n"
                "[$text-muted]press q to quit[/]",
                id="error-message",
            )
