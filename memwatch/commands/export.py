"""``memwatch export [RUN] --format csv|json|html [-o FILE]``: a run to share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from memwatch.errors import MemwatchError
from memwatch.report.export import EXPORT_FORMATS


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a run's per-step table (csv, json) or a self-contained HTML page",
        description=(
            "Export RUN: the per-step table with memory by category as CSV or JSON, or a "
            "self-contained HTML page (findings, SVG timelines, report; no network)."
        ),
    )
    parser.add_argument("run", nargs="?", metavar="RUN")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="html")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default stdout)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from memwatch.commands.common import load_run
    from memwatch.report import render
    from memwatch.report.export import export_csv, export_html, export_json
    from memwatch.store.paths import is_rank_directory, resolve_run

    path = resolve_run(args.run)
    if is_rank_directory(path):
        raise MemwatchError(f"{path} is a run directory of several ranks: export one rank's file")
    loaded = load_run(path)
    if args.format == "csv":
        text = export_csv(loaded.steps, loaded.categories)
    elif args.format == "json":
        text = export_json(loaded.info, loaded.steps, loaded.categories, loaded.findings)
    else:
        report = render(
            "text", loaded.info, loaded.steps, loaded.findings, categories=loaded.categories
        )
        text = export_html(loaded.info, loaded.steps, loaded.categories, loaded.findings, report)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    target = Path(args.output)
    if target.resolve() == path.resolve():
        raise MemwatchError("the output would replace the run file; choose another name")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise MemwatchError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"memwatch export: wrote {target}", file=sys.stderr)
    return 0
