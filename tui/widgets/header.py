"""The run header: what ran, where, and whether it is still recording."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from memwatch.records import RunInfo

from ..view import RunState, device_text, run_title
from .text import styled

_STATE_STYLE = {"live": "$text-success", "finished": "$text-muted", "stopped": "$text-warning"}


class RunHeader(Vertical):
    """Two lines: script and status on the first, device, torch and file on the second.

    The right-hand parts never shrink; the left-hand ones are cut with an ellipsis, so the
    step and the live/finished state stay visible at 80 columns.
    """

    DEFAULT_CSS = """
    RunHeader { height: 2; background: $panel; color: $foreground; }
    RunHeader Horizontal { height: 1; background: $panel; }
    RunHeader Static { background: $panel; color: $foreground; }
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

    def show(self, info: RunInfo, state: RunState, steps: str, label: str, extra: str = "") -> None:
        """Fill in the run; ``steps`` says how many (``60 steps``); ``extra`` is appended to
        the status (e.g. ``following``). Every stored string is shown as plain text."""
        title = styled("[b]memwatch[/b] [$text-muted]▸[/] [b]$title[/b]", title=run_title(info))
        self.query_one("#header-title", Static).update(title)
        style = _STATE_STYLE.get(state.state, "$text-muted")
        template = f"$steps · [{style}]$state[/]" + (" · $extra" if extra else "")
        status = styled(template, steps=steps, state=state.text, extra=extra)
        self.query_one("#header-status", Static).update(status)
        device = styled(
            "[$text-muted]$device · torch $torch[/]", device=device_text(info), torch=info.torch
        )
        self.query_one("#header-device", Static).update(device)
        self.query_one("#header-file", Static).update(styled("[$text-muted]$label[/]", label=label))
