"""``memwatch baseline RUN > mem-baseline.json``: the few numbers a CI gate compares with."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "baseline",
        help="print a run's memory baseline as JSON (for memwatch check --baseline)",
        description=(
            "Print RUN's peaks, growth per step, categories and findings as a small JSON "
            "baseline (schema memwatch.baseline/1) for `memwatch check RUN --baseline FILE`."
        ),
    )
    parser.add_argument("run", nargs="?", metavar="RUN")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from memwatch.commands.compare import load_profile

    _, profile = load_profile(args.run)
    sys.stdout.write(json.dumps(profile.to_dict(), indent=2, default=str) + "\n")
    return 0
