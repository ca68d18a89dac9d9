"""``memwatch report --format json``: the ``memwatch.report/1`` object (README, contracts)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from memwatch.records import Finding, MemoryCategories, RunInfo
from memwatch.report.summary import StepSummary

SCHEMA = "memwatch.report/1"


def run_dict(
    info: RunInfo | None, status: str | None = None, state: str | None = None
) -> dict[str, Any]:
    """The run's description; ``status`` and ``state`` (how the run stands, as a word and
    in words: an addition to ``memwatch.report/1``) when the caller knows them."""
    if info is None:
        return {}
    standing: dict[str, Any] = {} if status is None else {"status": status, "state": state}
    return {
        **standing,
        "id": info.id,
        "script": info.script,
        "argv": list(info.argv),
        "started_at": info.started_at,
        "ended_at": info.ended_at,
        "exit_status": info.exit_status,
        "python": info.python,
        "torch": info.torch,
        "device": {
            "type": info.device_type,
            "name": info.device_name,
            "total_bytes": info.device_total_bytes,
        },
        "rank": info.rank,
        "world_size": info.world_size,
    }


def steps_dict(summary: StepSummary) -> dict[str, Any]:
    return {
        "count": summary.count,
        "peak_allocated_bytes": summary.peak_allocated_bytes,
        "final_allocated_bytes": summary.final_allocated_bytes,
        "peak_autograd_saved_bytes": summary.peak_autograd_saved_bytes,
        "peak_rss_bytes": summary.peak_rss_bytes,
    }


def report_dict(
    info: RunInfo | None,
    summary: StepSummary,
    findings: Sequence[Finding],
    ranks: Sequence[Mapping[str, Any]] | None = None,
    categories: Sequence[MemoryCategories] = (),
    status: str | None = None,
    state: str | None = None,
) -> dict[str, Any]:
    """The report object; ``ranks`` (one dict per rank) only for a multi-rank run directory;
    ``categories`` (memory by category, an addition to ``memwatch.report/1``) only for runs
    that recorded them."""
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "run": run_dict(info, status, state),
        "steps": steps_dict(summary),
        "findings": [f.to_dict() for f in findings],
    }
    if ranks is not None:
        report["ranks"] = [dict(r) for r in ranks]
    if categories:
        from memwatch.report.categories import categories_dict

        report["categories"] = categories_dict(categories)
    return report


def render_json(
    info: RunInfo | None,
    summary: StepSummary,
    findings: Sequence[Finding],
    ranks: Sequence[Mapping[str, Any]] | None = None,
    categories: Sequence[MemoryCategories] = (),
    status: str | None = None,
    state: str | None = None,
) -> str:
    return json.dumps(
        report_dict(info, summary, findings, ranks, categories, status, state),
        indent=2,
        default=str,
    )
