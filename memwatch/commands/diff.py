"""``memwatch diff RUN_A RUN_B``: two runs (or a run and a baseline) side by side."""

from __future__ import annotations

import argparse
import json
from typing import Any

from memwatch.analysis.compare import DEFAULT_TOLERANCE, diff, format_value, parse_tolerance
from memwatch.plaintext import plain


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="compare two runs step by step (peaks, growth, categories, findings)",
        description=(
            "Compare RUN_B with RUN_A: peaks, growth per step, memory by category, step "
            "time, findings that appeared or disappeared, and a one-line verdict. Each RUN "
            "is a run file or a baseline JSON (memwatch baseline)."
        ),
    )
    parser.add_argument("run_a", metavar="RUN_A")
    parser.add_argument("run_b", metavar="RUN_B")
    parser.add_argument(
        "--tolerance",
        default=f"{DEFAULT_TOLERANCE:.0%}",
        help="changes within this are 'the same' (default 5%%)",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from memwatch.commands.compare import load_profile

    tolerance = parse_tolerance(args.tolerance)
    path_a, a = load_profile(args.run_a)
    path_b, b = load_profile(args.run_b)
    result = diff(a, b, tolerance)
    if args.format == "json":
        data = {
            "schema": "memwatch.diff/1",
            "a": str(path_a),
            "b": str(path_b),
            "verdict": result.verdict,
            "diverges_at_step": result.diverges_at,
            "metrics": [
                {"metric": r.metric.key, "a": r.a, "b": r.b, "change": r.change}
                for r in result.rows
            ],
            "appeared": [dict(f) for f in result.appeared],
            "disappeared": [dict(f) for f in result.disappeared],
        }
        print(json.dumps(data, indent=2, default=str))
        return 0
    print(f"memwatch diff: {plain(result.verdict)}")
    print(f"  A: {plain(path_a)} ({a.steps} steps)")
    print(f"  B: {plain(path_b)} ({b.steps} steps)")
    print()
    print(f"  {'metric':<28}{'A':>17}{'B':>17}{'change':>10}")
    for row in result.rows:
        change = f"{row.change * 100:+.0f}%" if row.change is not None else ""
        print(
            f"  {row.metric.label:<28}{format_value(row.metric, row.a):>17}"
            f"{format_value(row.metric, row.b):>17}{change:>10}"
        )
    for title, findings in (("appeared in B", result.appeared), ("gone in B", result.disappeared)):
        if findings:
            print()
            print(f"  findings {title}:")
            for f in findings:
                kind, title = plain(f.get("kind")), plain(f.get("title"))
                print(f"    {plain(f.get('severity'))} [{kind}] {title}")
    return 0
