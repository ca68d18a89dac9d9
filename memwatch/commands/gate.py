"""``memwatch check RUN --baseline BASE [--tolerance 5%]``: the CI memory gate.

Exit 0 when every gated metric is within the baseline's tolerance and no finding reaches
``--fail-on``; 1 when one does not (a readable table says which); 2 on bad input.
"""

from __future__ import annotations

import argparse

from memwatch.analysis.compare import check, format_value, parse_tolerance
from memwatch.commands.check import failing
from memwatch.plaintext import plain
from memwatch.records import Finding


def run_gate(args: argparse.Namespace) -> int:
    from memwatch.commands.compare import load_profile

    tolerance = parse_tolerance(args.tolerance)
    base_path, base = load_profile(args.baseline)
    run_path, current = load_profile(args.run)
    gates = check(current, base, tolerance)
    over = [g for g in gates if not g.ok]
    findings = [Finding.from_dict({**f, "detail": "", "fix": ""}) for f in current.findings]
    bad = failing(findings, args.fail_on)
    print(
        f"memwatch check: {plain(run_path)} against {plain(base_path)} "
        f"(tolerance {tolerance * 100:g}%)"
    )
    print(f"  {'metric':<28}{'baseline':>17}{'limit':>17}{'run':>17}  result")
    for gate in gates:
        m = gate.metric
        result = "ok" if gate.ok else "OVER"
        if gate.limit is None:
            result = "new (no baseline)"
        print(
            f"  {m.label:<28}{format_value(m, gate.baseline):>17}"
            f"{format_value(m, gate.limit):>17}{format_value(m, gate.value):>17}  {result}"
        )
    for f in bad:
        print(f"  finding: {f.severity} [{plain(f.kind)}] {plain(f.title)}")
    if over or bad:
        parts = []
        if over:
            parts.append(f"{len(over)} metric(s) over the baseline")
        if bad:
            parts.append(f"{len(bad)} finding(s) at or above {args.fail_on}")
        print(f"memwatch check: FAIL: {', '.join(parts)}")
        return 1
    print("memwatch check: ok")
    return 0
