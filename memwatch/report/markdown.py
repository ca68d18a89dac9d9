"""Markdown report, for pasting into an issue or a pull request."""

from __future__ import annotations

from collections.abc import Sequence

from memwatch.records import Finding, RunInfo
from memwatch.report.summary import StepSummary
from memwatch.report.text import headline, memory_lines
from memwatch.units import format_size


def render_markdown(info: RunInfo | None, summary: StepSummary, findings: Sequence[Finding]) -> str:
    title = headline(info, summary, findings).removeprefix("memwatch: ")
    lines = [f"## memwatch: {title}", ""]
    if findings:
        lines += [
            "| severity | kind | where | variable | per step | fix |",
            "|---|---|---|---|---|---|",
        ]
        for f in findings:
            where = f"`{f.location.file}:{f.location.line}`" if f.location else ""
            var = f"`{f.variable}`" if f.variable else ""
            growth = (
                format_size(f.growth_per_step_bytes, signed=True) if f.growth_per_step_bytes else ""
            )
            fix = f.fix.replace("|", "\\|")
            lines.append(f"| {f.severity} | {f.kind} | {where} | {var} | {growth} | {fix} |")
        lines.append("")
        for f in findings:
            lines += [f"### {f.kind}: {f.title}", "", f.detail, ""]
    lines += (
        ["### Memory", "", "```"] + [ln.strip() for ln in memory_lines(info, summary)] + ["```", ""]
    )
    return "\n".join(lines)
