"""``memwatch report [RUN] [--format text|json|markdown]``."""

from __future__ import annotations

import argparse
from typing import Any

from memwatch.report import FORMATS, render
from memwatch.store.paths import is_rank_directory, resolve_run


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="print the report of a run (newest in ./memwatch-runs by default)",
        description="Print the report of RUN: a run file, or a run directory of several ranks.",
    )
    parser.add_argument("run", nargs="?", metavar="RUN")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from memwatch.commands.common import load_run, untrusted, write_out

    path = resolve_run(args.run)
    with untrusted(path):
        if is_rank_directory(path):
            from memwatch.commands.ranks import render_rank_directory

            text = render_rank_directory(path, args.format)
        else:
            loaded = load_run(path)
            text = render(
                args.format,
                loaded.info,
                loaded.steps,
                loaded.findings,
                state=loaded.state,
                categories=loaded.categories,
                status=loaded.status,
            )
            if args.format == "json":
                text += "\n"
    write_out(text)
    return 0
