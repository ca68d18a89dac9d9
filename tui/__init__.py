"""memwatch's terminal dashboard (``memwatch tui``, ``memwatch run --live``).

Reads run files only, through ``memwatch.store``: it never imports torch or the
collectors, so it starts fast and can watch a run from another terminal or machine.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path


def prefer_fixed_colours(environ: MutableMapping[str, str] | None = None) -> None:
    """Draw with at least 256 colours where the terminal claims only 16 (``TERM=screen``).

    With 16 colours every theme colour becomes one of the terminal's own palette entries,
    whose real colour depends on the terminal's scheme: the light theme on a dark terminal
    turned into black text on black. Colours 16-255 are the same on every terminal (and
    every terminal emulator in use draws them, tmux and screen included), so the picture
    no longer depends on the terminal's background. A user's own ``TEXTUAL_COLOR_SYSTEM``
    or ``NO_COLOR`` is left alone. Call before Textual is imported.
    """
    env = os.environ if environ is None else environ
    if env.get("TEXTUAL_COLOR_SYSTEM") or "NO_COLOR" in env:
        return
    from rich.console import Console

    detected = Console(force_terminal=True, _environ=dict(env)).color_system
    if detected == "standard":
        env["TEXTUAL_COLOR_SYSTEM"] = "256"


def run_dashboard(path: Path, follow: bool | None = None) -> int:
    """Open the dashboard on ``path`` (a run file or run directory); returns the exit status.

    Textual is imported here, not at package import, so ``import memwatch_tui`` stays cheap.
    """
    prefer_fixed_colours()
    from .app import run_dashboard as run

    return run(path, follow)


__all__ = ["prefer_fixed_colours", "run_dashboard"]
