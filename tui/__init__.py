"""memwatch's terminal dashboard (``memwatch tui``, ``memwatch run --live``).

Reads run files only, through ``memwatch.store``: it never imports torch or the
collectors, so it starts fast and can watch a run from another terminal or machine.
"""

from __future__ import annotations

from pathlib import Path


def run_dashboard(path: Path, follow: bool | None = None) -> int:
    """Open the dashboard on ``path`` (a run file or run directory); returns the exit status.

    Textual is imported here, not at package import, so ``import tui`` stays cheap.
    """
    from .app import run_dashboard as run

    return run(path, follow)


__all__ = ["run_dashboard"]
