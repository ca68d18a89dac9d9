"""Loading a run for the read-side commands (report, check)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from memwatch.analysis import AnalysisInput, analyze
from memwatch.records import Finding, MemoryCategories, RunInfo, StepRecord
from memwatch.store import RunReader


@dataclass(frozen=True)
class LoadedRun:
    path: Path
    info: RunInfo
    steps: list[StepRecord]
    findings: list[Finding]
    categories: list[MemoryCategories] = field(default_factory=list)


def load_run(path: Path) -> LoadedRun:
    """Read a run file and judge it again with the current detectors.

    Findings are recomputed from the recorded steps and events rather than trusted from
    the file, so a report of an old or killed run uses today's detectors and the whole run.
    """
    with RunReader(path) as reader:
        info = reader.info()
        steps = reader.steps()
        events = reader.events()
        categories = reader.categories()
    findings = analyze(
        AnalysisInput(steps=steps, events=events, info=info, final=True, categories=categories)
    )
    if info.rank is not None:
        from dataclasses import replace

        findings = [replace(f, rank=info.rank) for f in findings]
    return LoadedRun(path, info, steps, findings, categories)
