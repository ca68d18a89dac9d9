"""Screens over the dashboard: key help, the live-run quit question, and open errors."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Static

from memwatch.records import Finding

from .user_source import Excerpt
from .widgets.findings import detail_content
from .widgets.text import styled

#: ``(keys, what they do)``: the single source for the help screen.
KEYS: tuple[tuple[str, str], ...] = (
    ("← →", "move the step cursor by one column"),
    ("shift+← →", "move the cursor by ten columns"),
    ("home / end", "first step / newest step (end follows)"),
    ("+ / -", "zoom in / out around the cursor"),
    ("[ / ]", "pan the window by half its width"),
    ("0", "show the whole run"),
    ("1 … 6", "hide / show the series with that number in the legend"),
    ("f", "follow: newest step under the cursor"),
    ("↑ ↓", "choose a finding; its detail shows"),
    ("enter", "cursor to the finding's first step"),
    ("d", "the finding's detail full-screen (esc closes)"),
    ("tab", "next panel (findings, holders, detail)"),
    ("r", "timeline: next rank of a multi-rank run"),
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
                styled(
                    "[b]The training is still running[/b] (pid $pid).\n"
                    "It records to [$text-accent]$path[/].\n\n"
                    "Leave it running in the background, or stop it?",
                    pid=self.pid,
                    path=self.run_path,
                )
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
                styled(
                    "[$text-error b]cannot open the run[/]\n\n$message\n\n"
                    "[$text-muted]press q to quit[/]",
                    message=self.message,
                ),
                id="error-message",
            )


class DetailScreen(Screen[None]):
    """A finding's detail over the whole terminal: at 80x24 the pane below the timeline
    has room for a few lines only, and the source excerpt would be scrolls away."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,d,q", "close", "Close"),
    ]

    DEFAULT_CSS = """
    DetailScreen { background: $background; color: $foreground; }
    DetailScreen VerticalScroll {
        border: round $accent; border-title-color: $text-accent; padding: 0 1;
        background: $background; color: $foreground;
    }
    DetailScreen Static { width: 1fr; background: $background; color: $foreground; }
    """

    def __init__(self, finding: Finding, excerpt: Excerpt | None) -> None:
        super().__init__()
        self.finding = finding
        self.excerpt = excerpt

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll(id="detail-full")
        scroll.border_title = styled("detail · $kind", kind=self.finding.kind)
        with scroll:
            yield Static(detail_content(self.finding, self.excerpt))
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
