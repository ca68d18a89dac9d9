"""The run header: what ran, where, and whether it is still recording."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import Static

from memwatch.records import RunInfo

from ..view import RunState, device_text, run_title

_STATE_STYLE = {"live": "$text-success", "finished": "$text-muted", "stopped": "$text-warning"}


class RunHeader(Vertical):
    """Two lines: script and status on the first, device, torch and file on the second.

    The right-hand parts never shrink; the left-hand ones are cut with an ellipsis, so the
    step and the live/finished state stay visible at 80 columns.
    """

    DEFAULT_CSS = """
    RunHeader { height: 2; background: $panel; }
    RunHeader Horizontal { height: 1; }
    RunHeader .left { width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; padding: 0 1; }
    RunHeader .right { width: auto; text-wrap: nowrap; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static("memwatch", id="header-title", classes="left")
            yield Static("", id="header-status", classes="right")
        with Horizontal():
            yield Static("", id="header-device", classes="left")
            yield Static("", id="header-file", classes="right")

    def show(
        self, info: RunInfo, state: RunState, last: int | None, label: str, extra: str = ""
    ) -> None:
        """Fill in the run; ``extra`` is appended to the status (e.g. ``following``)."""
        title = f"[b]memwatch[/b] [$text-muted]▸[/] [b]{escape(run_title(info))}[/b]"
        self.query_one("#header-title", Static).update(title)
        step = "no steps yet" if last is None else f"step {last:,}"
        style = _STATE_STYLE.get(state.state, "$text-muted")
        status = f"{step} · [{style}]{escape(state.text)}[/]"
        if extra:
            status += f" · {escape(extra)}"
        self.query_one("#header-status", Static).update(status)
        device = f"{escape(device_text(info))} · torch {escape(info.torch)}"
        self.query_one("#header-device", Static).update(f"[$text-muted]{device}[/]")
        self.query_one("#header-file", Static).update(f"[$text-muted]{escape(label)}[/]")
