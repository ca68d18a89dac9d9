"""``memwatch tui [RUN] [--follow]``: the dashboard (package ``tui``, which never imports torch)."""

from __future__ import annotations

import argparse
from typing import Any

from memwatch.store.paths import resolve_run


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
    from memwatch_tui import run_dashboard

    return run_dashboard(path, follow=args.follow)
