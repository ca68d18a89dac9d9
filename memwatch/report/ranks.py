"""Reports of a multi-rank run: every rank side by side, findings labelled with their rank.

A run directory (one run file per rank, see ``memwatch.store.paths.run_file_path``) is
loaded by ``memwatch.commands.ranks`` into a ``MergedRun``; this module only renders it,
so the same views serve ``memwatch report RUN_DIR`` and the end-of-run report of rank 0.

The JSON form is the ``memwatch.report/1`` object of one run with a ``"ranks"`` list added
(design section 6): ``run`` describes the launch (``rank`` null, ``world_size`` set,
``exit_status`` 0 only if every rank exited 0), ``steps`` holds the worst rank's numbers,
and every finding carries ``"rank"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from memwatch.analysis.detectors.rank_imbalance import RankStats
from memwatch.plaintext import plain
from memwatch.records import Finding, RunInfo
from memwatch.report.summary import StepSummary
from memwatch.report.text import finding_lines
from memwatch.units import format_size


@dataclass(frozen=True)
class RankEntry:
    """One rank's run file, read and judged."""

    path: Path
    info: RunInfo
    summary: StepSummary
    stats: RankStats
    findings: Sequence[Finding]
    status: str  # "exit 0", "exit 1", "running", "killed", "unfinished"

    @property
    def rank(self) -> int:
        return self.stats.rank

    @property
    def growth(self) -> tuple[int | None, str]:
        """Growth per step of tracked memory: device allocated, else autograd-saved."""
        if self.stats.allocated_growth_per_step_bytes is not None:
            return self.stats.allocated_growth_per_step_bytes, "allocated"
        return self.stats.saved_growth_per_step_bytes, "autograd_saved"


@dataclass(frozen=True)
class MergedRun:
    """All ranks of one launch: entries in rank order and every finding, most severe first."""

    directory: Path
    entries: Sequence[RankEntry]
    findings: Sequence[Finding]
    world_size: int | None
    notes: Sequence[str] = field(default_factory=tuple)  # files skipped, ranks missing

    @property
    def missing_ranks(self) -> list[int]:
        if self.world_size is None:
            return []
        have = {e.rank for e in self.entries}
        return [r for r in range(self.world_size) if r not in have]

    def info(self) -> RunInfo | None:
        """The launch as one run: the lowest rank's description, widened to all ranks."""
        if not self.entries:
            return None
        infos = [e.info for e in self.entries]
        ended = [i.ended_at for i in infos]
        statuses = [i.exit_status for i in infos]
        exit_status: int | None = None
        if all(s is not None for s in statuses) and not self.missing_ranks:
            exit_status = next((s for s in statuses if s), 0)
        return replace(
            infos[0],
            rank=None,
            local_rank=None,
            world_size=self.world_size,
            started_at=min(i.started_at for i in infos),
            ended_at=None if None in ended or self.missing_ranks else max(e for e in ended if e),
            exit_status=exit_status,
        )

    def summary(self) -> StepSummary:
        """The worst rank's numbers (max over ranks), for the report's ``steps`` object."""

        def worst(name: str) -> Any:
            values = [getattr(e.summary, name) for e in self.entries]
            present = [v for v in values if v is not None]
            return max(present) if present else None

        count = worst("count") or 0
        return StepSummary(
            count=count,
            first_step=min(
                (e.summary.first_step for e in self.entries if e.summary.first_step is not None),
                default=None,
            ),
            last_step=worst("last_step"),
            peak_allocated_bytes=worst("peak_allocated_bytes"),
            final_allocated_bytes=worst("final_allocated_bytes"),
            peak_reserved_bytes=worst("peak_reserved_bytes"),
            peak_autograd_saved_bytes=worst("peak_autograd_saved_bytes") or 0,
            final_autograd_saved_bytes=worst("final_autograd_saved_bytes") or 0,
            peak_rss_bytes=worst("peak_rss_bytes"),
            first_rss_bytes=worst("first_rss_bytes"),
            final_rss_bytes=worst("final_rss_bytes"),
            oom_events=sum(e.summary.oom_events for e in self.entries),
            median_step_s=worst("median_step_s"),
        )


# -- JSON -------------------------------------------------------------------------------------
def rank_dict(entry: RankEntry) -> dict[str, Any]:
    """One element of the report's ``"ranks"`` list."""
    info, summary, stats = entry.info, entry.summary, entry.stats
    growth, metric = entry.growth
    return {
        "rank": entry.rank,
        "world_size": info.world_size,
        "local_rank": info.local_rank,
        "host": info.host,
        "pid": info.pid,
        "path": str(entry.path),
        "status": entry.status,
        "exit_status": info.exit_status,
        "started_at": info.started_at,
        "ended_at": info.ended_at,
        "steps": summary.count,
        "first_step": summary.first_step,
        "last_step": summary.last_step,
        "peak_allocated_bytes": summary.peak_allocated_bytes,
        "final_allocated_bytes": summary.final_allocated_bytes,
        "peak_reserved_bytes": summary.peak_reserved_bytes,
        "peak_autograd_saved_bytes": summary.peak_autograd_saved_bytes,
        "final_autograd_saved_bytes": summary.final_autograd_saved_bytes,
        "peak_rss_bytes": summary.peak_rss_bytes,
        "growth_per_step_bytes": growth,
        "growth_metric": metric,
        "allocated_growth_per_step_bytes": stats.allocated_growth_per_step_bytes,
        "saved_growth_per_step_bytes": stats.saved_growth_per_step_bytes,
        "rss_growth_per_step_bytes": stats.rss_growth_per_step_bytes,
        "findings": len(entry.findings),
    }


def render_ranks_json(merged: MergedRun) -> str:
    from memwatch.report.json import render_json

    return render_json(
        merged.info(),
        merged.summary(),
        merged.findings,
        ranks=[rank_dict(e) for e in merged.entries],
    )


# -- text -------------------------------------------------------------------------------------
def _size(value: int | None, signed: bool = False) -> str:
    return "-" if value is None else format_size(value, signed=signed)


def rank_table(merged: MergedRun) -> list[str]:
    """Per-rank peaks and growth side by side (fits 80 columns)."""
    head = ("rank", "steps", "dev peak", "saved peak", "RSS peak", "growth/st", "RSS/st", "status")
    rows = [head]
    for e in merged.entries:
        growth, _ = e.growth
        rows.append(
            (
                str(e.rank),
                str(e.summary.count),
                _size(e.summary.peak_allocated_bytes),
                _size(e.summary.peak_autograd_saved_bytes),
                _size(e.summary.peak_rss_bytes),
                _size(growth, signed=True),
                _size(e.stats.rss_growth_per_step_bytes, signed=True),
                plain(e.status),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for row in rows:
        cells = [c.rjust(w) for c, w in zip(row[:-1], widths[:-1])]
        lines.append(("  " + "  ".join(cells) + "  " + row[-1]).rstrip())
    return lines


def _ranks_heading(merged: MergedRun) -> str:
    n = len(merged.entries)
    of = f" of {merged.world_size}" if merged.world_size is not None else ""
    info = merged.info()
    where = f": {plain(info.device_type)}, torch {plain(info.torch)}" if info is not None else ""
    return f"Ranks ({n}{of}){where}"


def _footnotes(merged: MergedRun) -> list[str]:
    notes = []
    metrics = {e.growth[1] for e in merged.entries}
    what = {
        "allocated": "device allocated bytes per step",
        "autograd_saved": "autograd-saved bytes per step (device memory not measured)",
    }
    notes.append("  growth/st: " + "; ".join(what[m] for m in sorted(metrics)))
    hosts = sorted({e.info.host for e in merged.entries})
    if len(hosts) > 1:
        by_host = {h: [str(e.rank) for e in merged.entries if e.info.host == h] for h in hosts}
        notes.append(
            "  hosts: " + "; ".join(f"{plain(h)}: {', '.join(r)}" for h, r in by_host.items())
        )
    if merged.missing_ranks:
        notes.append(
            f"  no file for rank(s) {_ranks_text(merged.missing_ranks)} in "
            f"{plain(merged.directory)} (still starting, or written on another host)"
        )
    notes += [f"  {plain(note)}" for note in merged.notes]
    return notes


def _ranks_text(ranks: Sequence[int]) -> str:
    return ", ".join(str(r) for r in ranks)


def headline(merged: MergedRun) -> str:
    info = merged.info()
    script = plain(os.path.basename(info.script)) if info else "run"
    steps = merged.summary().count
    ranks = f"{len(merged.entries)} rank{'' if len(merged.entries) == 1 else 's'}"
    findings = merged.findings
    if not findings:
        return f"memwatch: {script} ({ranks}): no memory problems found in {steps} steps"
    counts = []
    for sev in ("error", "warning", "info"):
        n = sum(1 for f in findings if f.severity == sev)
        if n:
            counts.append(f"{n} {sev}{'' if n == 1 else 's'}")
    return f"memwatch: {script} ({ranks}): {', '.join(counts)} in {steps} steps"


def render_ranks_text(merged: MergedRun) -> str:
    lines = [headline(merged)]
    for i, finding in enumerate(merged.findings, 1):
        lines.append("")
        lines.extend(finding_lines(finding, i))
    lines.append("")
    lines.append(_ranks_heading(merged))
    lines.extend(rank_table(merged))
    lines.extend(_footnotes(merged))
    return "\n".join(lines) + "\n"


# -- markdown ---------------------------------------------------------------------------------
def render_ranks_markdown(merged: MergedRun) -> str:
    from memwatch.report.markdown import md_code, md_text

    lines = [f"## {md_text(headline(merged).removeprefix('memwatch: '))}", ""]
    if merged.findings:
        lines += [
            "| rank | severity | kind | where | variable | per step | fix |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in merged.findings:
            where = md_code(f"{f.location.file}:{f.location.line}") if f.location else ""
            var = md_code(f.variable or "")
            growth = (
                format_size(f.growth_per_step_bytes, signed=True) if f.growth_per_step_bytes else ""
            )
            rank = "" if f.rank is None else str(f.rank)
            lines.append(
                f"| {rank} | {md_text(f.severity)} | {md_text(f.kind)} | {where} | {var} "
                f"| {growth} | {md_text(f.fix)} |"
            )
        lines.append("")
        for f in merged.findings:
            rank = "" if f.rank is None else f" (rank {f.rank})"
            lines += [f"### {md_text(f.kind)}{rank}: {md_text(f.title)}", "", md_text(f.detail), ""]
    lines += ["### Ranks", "", "```", *rank_table(merged), *_footnotes(merged), "```", ""]
    return "\n".join(lines)


def render_ranks(format: str, merged: MergedRun) -> str:
    """The report of a multi-rank run in ``format`` (text, markdown or json)."""
    if format == "json":
        return render_ranks_json(merged) + "\n"
    if format == "markdown":
        return render_ranks_markdown(merged)
    if format == "text":
        return render_ranks_text(merged)
    raise ValueError(f"unknown report format {format!r}")
