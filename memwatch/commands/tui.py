"""``memwatch tui [RUN] [--follow]``: the dashboard (package ``tui``, which never imports torch)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from memwatch.errors import MemwatchError
from memwatch.store.paths import resolve_run


def has_terminal() -> bool:
    """Whether stdin and stdout are both a terminal: the dashboard needs one to draw on
    and read keys from (under CI, nohup or a redirect it would hang writing escapes)."""
    try:
        return bool(sys.stdin and sys.stdin.isatty() and sys.stdout and sys.stdout.isatty())
    except (ValueError, OSError):  # a closed stream
        return False


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tui",
        help="open the dashboard on a run (newest by default)",
        description="Open the terminal dashboard on RUN; --follow tails a run being written.",
    )
    parser.add_argument("run", nargs="?", metavar="RUN")
    parser.add_argument(
        "--follow",
        action="store_true",
        default=None,
        help="keep reading as the run grows (default while the run is live)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path = resolve_run(args.run)
    if path.is_file():  # a bad file is named as such, with or without a terminal
        from memwatch.store.reader import RunReader

        RunReader(path).close()
    if not has_terminal():
        raise MemwatchError(
            "the dashboard needs a terminal, and stdin or stdout is not one; "
            f"read the run with `memwatch report {path}` instead"
        )
    from memwatch_tui import run_dashboard

    return run_dashboard(path, follow=args.follow)
