"""Reading a run directory of several ranks (one run file per rank) as one run."""

from __future__ import annotations

from pathlib import Path

from memwatch.commands.common import LoadedRun, load_run
from memwatch.records import Finding, sort_findings
from memwatch.store.paths import find_run_files


def load_ranks(directory: Path) -> list[LoadedRun]:
    runs = [load_run(p) for p in find_run_files(directory)]
    return sorted(runs, key=lambda r: (r.info.rank if r.info.rank is not None else -1))


def load_rank_findings(directory: Path) -> list[Finding]:
    return sort_findings([f for run in load_ranks(directory) for f in run.findings])


def render_rank_directory(directory: Path, format: str) -> str:
    from memwatch.report import render

    parts = []
    for run in load_ranks(directory):
        parts.append(render(format, run.info, run.steps, run.findings))
    return "\n".join(parts)
