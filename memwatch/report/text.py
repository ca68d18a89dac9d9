"""The text report: what a person reads in ten seconds at the end of a run.

Findings come first (most severe first, each with where, how much and the fix), then
the memory numbers per step. Plain text, no colour codes, fits 80 columns. Every string
that came from a run file (script, device, names, places, finding text) goes through
``plain``: a crafted file cannot send escape sequences to the terminal or fake lines.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

from memwatch.plaintext import plain
from memwatch.records import Finding, MemoryCategories, RunInfo
from memwatch.report.summary import StepSummary
from memwatch.units import format_size

WIDTH = 80


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def headline(info: RunInfo | None, summary: StepSummary, findings: Sequence[Finding]) -> str:
    script = plain(os.path.basename(info.script)) if info else "run"
    steps = _plural(summary.count, "step")
    if not findings:
        return f"memwatch: {script}: no memory problems found in {steps}"
    counts = [
        _plural(sum(1 for f in findings if f.severity == sev), sev)
        for sev in ("error", "warning", "info")
        if any(f.severity == sev for f in findings)
    ]
    return f"memwatch: {script}: {', '.join(counts)} in {steps}"


def finding_lines(finding: Finding, index: int | None = None) -> list[str]:
    """A finding as a short block: title, where/how much, fix."""
    label = finding.severity.upper()
    head = f"{index}. " if index is not None else ""
    label = plain(label)
    lines = [f"{head}{label} [{plain(finding.kind)}] {plain(finding.title)}"]
    facts = []
    if finding.location is not None:
        facts.append(plain(str(finding.location)))
    if finding.variable:
        facts.append(f"variable `{plain(finding.variable)}`")
    if finding.first_step is not None:
        facts.append(f"since step {finding.first_step}")
    if finding.growth_per_step_bytes:
        facts.append(f"{format_size(finding.growth_per_step_bytes, signed=True)}/step")
    if finding.bytes:
        facts.append(f"holds {format_size(finding.bytes)}")
    if finding.rank is not None:
        facts.append(f"rank {finding.rank}")
    indent = "   "
    if facts:
        lines.append(indent + " · ".join(facts))
    if finding.detail:
        lines.extend(
            textwrap.wrap(
                plain(finding.detail), WIDTH, initial_indent=indent, subsequent_indent=indent
            )
        )
    if finding.fix:
        lines.extend(
            textwrap.wrap(
                f"fix: {plain(finding.fix)}",
                WIDTH,
                initial_indent=indent,
                subsequent_indent=indent + "     ",
            )
        )
    return lines


def memory_lines(info: RunInfo | None, summary: StepSummary) -> list[str]:
    rows: list[tuple[str, str]] = []
    if summary.peak_allocated_bytes is not None:
        device = "tracked tensors" if info and info.device_type == "cpu" else "device allocated"
        rows.append(
            (
                device,
                f"peak {format_size(summary.peak_allocated_bytes)}, "
                f"at end {format_size(summary.final_allocated_bytes)}",
            )
        )
    if summary.peak_reserved_bytes is not None:
        rows.append(("device reserved", f"peak {format_size(summary.peak_reserved_bytes)}"))
    rows.append(
        (
            "autograd saved",
            f"peak {format_size(summary.peak_autograd_saved_bytes)}, "
            f"at end {format_size(summary.final_autograd_saved_bytes)}",
        )
    )
    if summary.first_rss_bytes is not None and summary.final_rss_bytes is not None:
        change = summary.final_rss_bytes - summary.first_rss_bytes
        rows.append(
            (
                "host RSS",
                f"{format_size(summary.first_rss_bytes)} -> "
                f"{format_size(summary.final_rss_bytes)} ({format_size(change, signed=True)}), "
                f"peak {format_size(summary.peak_rss_bytes)}",
            )
        )
    if summary.median_step_s is not None:
        rows.append(("step time", f"median {summary.median_step_s * 1000:.1f} ms"))
    if summary.oom_events:
        rows.append(("out of memory", _plural(summary.oom_events, "OOM error")))
    return [f"  {name:<17}{value}" for name, value in rows]


def render_text(
    info: RunInfo | None,
    summary: StepSummary,
    findings: Sequence[Finding],
    state: str | None = None,
    categories: Sequence[MemoryCategories] = (),
) -> str:
    lines = [headline(info, summary, findings)]
    if state:
        lines.append(f"  {plain(state)}")
    for i, finding in enumerate(findings, 1):
        lines.append("")
        lines.extend(finding_lines(finding, i))
    lines.append("")
    where = ""
    if info is not None:
        where = (
            f" ({plain(info.device_type)}: {plain(info.device_name)}, torch {plain(info.torch)})"
        )
    lines.append(f"Memory over {_plural(summary.count, 'step')}{where}")
    lines.extend(memory_lines(info, summary))
    if categories:
        from memwatch.report.categories import category_lines

        lines.extend(category_lines(categories))
    if info is not None and info.device_type == "cpu" and summary.peak_allocated_bytes is None:
        lines.append("  (CPU run: no allocator statistics; --track-tensors records tensor bytes)")
    return "\n".join(lines) + "\n"
