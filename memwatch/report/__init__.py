"""Reports: text for people, markdown for issues and PRs, JSON for machines (a contract)."""

from __future__ import annotations

from collections.abc import Sequence

from memwatch.records import Finding, MemoryCategories, RunInfo, StepRecord
from memwatch.report.summary import StepSummary, summarize

FORMATS = ("text", "json", "markdown")


def render(
    format: str,
    info: RunInfo | None,
    steps: Sequence[StepRecord],
    findings: Sequence[Finding],
    summary: StepSummary | None = None,
    state: str | None = None,
    categories: Sequence[MemoryCategories] = (),
    status: str | None = None,
) -> str:
    """The report of one run in ``format`` (``state``: how an unfinished run stands, in
    words; ``status``: the same as one word, for JSON; ``categories``: memory by category
    per step, shown where recorded)."""
    summary = summary if summary is not None else summarize(steps)
    if format == "json":
        from memwatch.report.json import render_json

        return render_json(
            info, summary, findings, categories=categories, status=status, state=state
        )
    if format == "markdown":
        from memwatch.report.markdown import render_markdown

        return render_markdown(info, summary, findings, state)
    if format == "text":
        from memwatch.report.text import render_text

        return render_text(info, summary, findings, state, categories=categories)
    raise ValueError(f"unknown report format {format!r}; choose one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "StepSummary", "render", "summarize"]
