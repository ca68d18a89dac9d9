"""A run directory of several ranks, read as one run for the dashboard's merged view.

The findings list of a multi-rank run shows every rank's findings (labelled by rank) and
the cross-rank ones (``rank-imbalance``), and a small table gives each rank's peaks and
growth: the same reading and judging as ``memwatch report RUN_DIR``
(``memwatch.commands.ranks.load_rank_directory``), so the two views agree, plus what each
rank's watched process found and stored. The timeline
shows one rank at a time (``r`` switches; choosing another rank's finding switches to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from memwatch.errors import RunFileError
from memwatch.records import Finding, sort_findings
from memwatch.store.paths import rank_of_file
from memwatch.units import format_size

if TYPE_CHECKING:
    from memwatch.report.ranks import MergedRun


@dataclass(frozen=True, slots=True)
class Merged:
    """Every rank's findings and the cross-rank ones, and the per-rank table's lines."""

    findings: tuple[Finding, ...]
    table: tuple[str, ...]
    #: The same per rank in four columns (rank, growth, peak, status), for narrow panels.
    compact: tuple[str, ...] = ()


def rank_numbers(files: Sequence[Path]) -> list[int | None]:
    """The rank each file of a run directory records in its name."""
    out: list[int | None] = []
    for file in files:
        found = rank_of_file(file)
        out.append(None if found is None else found[0])
    return out


def load_merged(directory: Path) -> Merged:
    """Read and judge every rank of ``directory`` (slow for long runs: call from a worker).

    Raises ``RunFileError`` when no rank can be read; a bad value in a file counts as that.
    """
    from memwatch.commands.ranks import load_rank_directory
    from memwatch.report.ranks import rank_table

    from .feed import FileFeed

    try:
        merged = load_rank_directory(directory)
        findings = list(merged.findings)
        keys = {f.key for f in findings}
        for entry in merged.entries:
            # What the watched process itself found (the rank's own view shows these too).
            feed = FileFeed(entry.path)
            try:
                stored = [replace(f, rank=entry.rank) for f in feed.findings()]
            finally:
                feed.close()
            findings += [f for f in stored if f.key not in keys]
            keys.update(f.key for f in stored)
        return Merged(
            tuple(sort_findings(findings)), tuple(rank_table(merged)), compact_table(merged)
        )
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise RunFileError(f"{directory} holds a bad value ({type(exc).__name__}: {exc})") from None


def compact_table(merged: MergedRun) -> tuple[str, ...]:
    """Rank, growth per step, peak (device, else autograd-saved) and status: 40 columns."""
    rows = [("rank", "growth/st", "peak", "status")]
    for entry in merged.entries:
        growth, _ = entry.growth
        summary = entry.summary
        peak = summary.peak_allocated_bytes or summary.peak_autograd_saved_bytes
        rows.append(
            (
                str(entry.rank),
                "-" if growth is None else format_size(growth, signed=True),
                "-" if peak is None else format_size(peak),
                entry.status,
            )
        )
    return tuple(f"{r[0]:>4}  {r[1]:>10}  {r[2]:>10}  {r[3]}" for r in rows)
