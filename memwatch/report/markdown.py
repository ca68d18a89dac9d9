"""Markdown report, for pasting into an issue or a pull request.

Strings from the run file are plain text here too: control characters escaped by
``plain``, and markdown's link, HTML and table syntax escaped (:func:`md_text`), or the
string shown as a code span (:func:`md_code`), so a crafted file cannot plant a link.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from memwatch.plaintext import plain
from memwatch.records import Finding, RunInfo
from memwatch.report.summary import StepSummary
from memwatch.report.text import headline, memory_lines
from memwatch.units import format_size

_MARKDOWN_SYNTAX = re.compile(r"([\\\[\]<>|])")


def md_text(value: object) -> str:
    """``value`` as markdown text that renders as itself: no link, HTML or table cell."""
    return _MARKDOWN_SYNTAX.sub(r"\\\1", plain(value))


def md_code(value: object) -> str:
    """``value`` as an inline code span (empty for an empty value): its content is shown
    literally; only a backtick (which would end it) and a pipe (which would end a table
    cell, even inside a span) are changed."""
    text = plain(value).replace("`", "'").replace("|", "\\|")
    return f"`{text}`" if text else ""


def render_markdown(
    info: RunInfo | None,
    summary: StepSummary,
    findings: Sequence[Finding],
    state: str | None = None,
) -> str:
    title = md_text(headline(info, summary, findings).removeprefix("memwatch: "))
    lines = [f"## memwatch: {title}", ""]
    if state:
        lines += [f"**{md_text(state)}**", ""]
    if findings:
        lines += [
            "| severity | kind | where | variable | per step | fix |",
            "|---|---|---|---|---|---|",
        ]
        for f in findings:
            where = md_code(f"{f.location.file}:{f.location.line}") if f.location else ""
            var = md_code(f.variable or "")
            growth = (
                format_size(f.growth_per_step_bytes, signed=True) if f.growth_per_step_bytes else ""
            )
            lines.append(
                f"| {md_text(f.severity)} | {md_text(f.kind)} | {where} | {var} | {growth} "
                f"| {md_text(f.fix)} |"
            )
        lines.append("")
        for f in findings:
            lines += [f"### {md_text(f.kind)}: {md_text(f.title)}", "", md_text(f.detail), ""]
    lines += (
        ["### Memory", "", "```"] + [ln.strip() for ln in memory_lines(info, summary)] + ["```", ""]
    )
    return "\n".join(lines)
