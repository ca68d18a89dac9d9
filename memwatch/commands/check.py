"""``memwatch check [RUN] [--fail-on error|warning]``: exit 1 when findings reach the level."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from memwatch.plaintext import plain
from memwatch.records import SEVERITY_RANK, Finding
from memwatch.report.text import finding_lines
from memwatch.store.paths import is_rank_directory, resolve_run


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="exit 1 if a run has findings at or above a severity (for CI)",
        description="Exit 1 when RUN has findings at or above --fail-on, 0 otherwise.",
    )
    parser.add_argument("run", nargs="?", metavar="RUN")
    parser.add_argument("--fail-on", choices=("error", "warning"), default="error")
    parser.add_argument(
        "--baseline",
        metavar="BASE",
        help="also exit 1 when peak, growth or a category exceeds BASE (a run file or the "
        "JSON of `memwatch baseline`) beyond --tolerance",
    )
    parser.add_argument("--tolerance", default="5%", help="allowed excess over BASE (5%%)")
    parser.set_defaults(handler=run)


def failing(findings: list[Finding], level: str) -> list[Finding]:
    limit = SEVERITY_RANK[level]
    return [f for f in findings if SEVERITY_RANK.get(f.severity, 9) <= limit]


def run(args: argparse.Namespace) -> int:
    if getattr(args, "baseline", None) is not None:
        from memwatch.commands.gate import run_gate

        return run_gate(args)
    from memwatch.commands.common import load_run, untrusted, write_out

    path = resolve_run(args.run)
    state = None
    with untrusted(path):
        if is_rank_directory(path):
            from memwatch.commands.ranks import load_rank_findings

            findings = load_rank_findings(path)
        else:
            loaded = load_run(path)
            findings, state = loaded.findings, loaded.state
        bad = failing(findings, args.fail_on)
        lines = []
        if not bad:
            lines.append(f"memwatch check: {plain(path)}: no findings at or above {args.fail_on}")
        else:
            lines.append(
                f"memwatch check: {plain(path)}: {len(bad)} finding(s) at or above {args.fail_on}"
            )
        if state:
            lines.append(f"  {plain(state)}")
        for i, finding in enumerate(bad, 1):
            lines.extend(finding_lines(finding, i))
    write_out("\n".join(lines) + "\n")
    sys.stdout.flush()
    return 1 if bad else 0
