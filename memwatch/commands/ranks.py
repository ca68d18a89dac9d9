"""Reading a run directory of several ranks (one run file per rank) as one run.

Used by ``memwatch report RUN_DIR``, ``memwatch check RUN_DIR`` and, at the end of a
torchrun launch, by rank 0's report. Each rank's file is read and judged on its own (its
findings labelled with its rank), then the ranks are compared with each other
(``rank-imbalance``). Reading is all there is: a rank still running, killed, or missing
is reported as such, never waited for with anything but a short, bounded poll of files.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from memwatch.analysis.detectors.rank_imbalance import all_rank_stats, detect_rank_imbalance
from memwatch.commands.common import LoadedRun, load_run
from memwatch.errors import RunFileError
from memwatch.records import Finding, RunInfo, sort_findings
from memwatch.report.ranks import MergedRun, RankEntry, render_ranks
from memwatch.report.summary import summarize
from memwatch.store import RunReader
from memwatch.store.liveness import writer_alive
from memwatch.store.paths import find_run_files, rank_of_file

#: How long rank 0 waits, at the end of its run, for the other ranks' files to be finished.
END_WAIT_S = 5.0


def rank_status(info: RunInfo) -> str:
    """``exit N`` for a finished rank; else ``running`` / ``killed`` (when this host can tell)."""
    if info.ended_at is not None:
        return "ended" if info.exit_status is None else f"exit {info.exit_status}"
    if info.host != socket.gethostname():
        return "unfinished"
    return "running" if writer_alive(info) else "killed"


def _newest_per_rank(directory: Path) -> tuple[dict[int, LoadedRun], list[str]]:
    """Each rank's newest readable run file; notes about the files left out."""
    notes: list[str] = []
    newest: dict[int, LoadedRun] = {}
    for path in find_run_files(directory):
        if rank_of_file(path) is None:
            notes.append(f"{path.name}: not a rank file, left out")
            continue
        try:
            run = load_run(path)
        except RunFileError as exc:
            notes.append(f"{path.name}: unreadable, left out ({exc})")
            continue
        rank = run.info.rank
        if rank is None:
            notes.append(f"{path.name}: records no rank, left out")
            continue
        old = newest.get(rank)
        if old is not None and old.info.started_at > run.info.started_at:
            run, old = old, run
        if old is not None:
            notes.append(f"{old.path.name}: an earlier run of rank {rank}, left out")
        newest[rank] = run
    return {r: newest[r] for r in sorted(newest)}, notes


def load_rank_directory(directory: Path, warmup: int = 3) -> MergedRun:
    """Read every rank's newest run file in ``directory`` and judge them together."""
    runs, notes = _newest_per_rank(directory)
    if not runs:
        raise RunFileError(f"no readable rank files in {directory}")
    steps = {rank: run.steps for rank, run in runs.items()}
    stats = {s.rank: s for s in all_rank_stats(steps, warmup)}
    entries = []
    findings: list[Finding] = []
    for rank, run in runs.items():
        entries.append(
            RankEntry(
                path=run.path,
                info=run.info,
                summary=summarize(run.steps),
                stats=stats[rank],
                findings=run.findings,
                status=rank_status(run.info),
            )
        )
        findings.extend(run.findings)
    findings.extend(detect_rank_imbalance(steps, warmup))
    world_sizes = [r.info.world_size for r in runs.values() if r.info.world_size is not None]
    world_size = max(world_sizes) if world_sizes else None
    return MergedRun(directory, entries, sort_findings(findings), world_size, tuple(notes))


def load_rank_findings(directory: Path) -> list[Finding]:
    """Every rank's findings and the cross-rank ones (for ``memwatch check RUN_DIR``)."""
    return list(load_rank_directory(directory).findings)


def render_rank_directory(directory: Path, format: str) -> str:
    """The merged report of a run directory (for ``memwatch report RUN_DIR``)."""
    return render_ranks(format, load_rank_directory(directory))


# -- end of a torchrun launch -------------------------------------------------------------------
def end_of_run_report(
    run_path: Path, info: RunInfo, wait_s: float = END_WAIT_S, poll_s: float = 0.2
) -> str | None:
    """What a rank prints when its run ends under torchrun (None: print nothing).

    Every rank printing a report would bury the output, so:

    * rank 0 waits (bounded by ``wait_s``, reading files only) for the other ranks of its
      directory to finish; if all ``world_size`` ranks are there and finished it prints the
      merged report, else its own report plus where the other ranks are;
    * another rank prints its own report only when its script failed, since then rank 0
      may never get to merge it (torchrun stops the group).
    """
    directory = run_path.parent
    if info.rank != 0:
        if info.exit_status in (None, 0):
            return None
        return _own_report(run_path, f"rank {info.rank} failed; its own report:")
    deadline = time.monotonic() + wait_s
    while True:
        pending, worth_waiting = _pending_ranks(directory, info)
        if not worth_waiting or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    if not pending:
        try:
            text = render_rank_directory(directory, "text")
        except RunFileError:
            text = None
        if text is not None:
            return text + _where(directory)
    merged_cmd = f"memwatch report {directory}"
    lines = [
        f"  other ranks      {'; '.join(pending)}",
        f"                   ({merged_cmd} merges all ranks once they finish)",
    ]
    own = _own_report(run_path, None)
    return own + "\n".join(lines) + "\n"


def _pending_ranks(directory: Path, info: RunInfo) -> tuple[list[str], bool]:
    """Why the merged report cannot be shown yet (one phrase per rank not finished), and
    whether waiting can help: a rank still running may finish; a killed one, or one whose
    file is not here (another host), will not."""
    world = info.world_size or 1
    latest: dict[int, RunInfo] = {}
    for path in find_run_files(directory):
        if rank_of_file(path) is None:
            continue
        try:
            with RunReader(path) as reader:
                other = reader.info()
        except RunFileError:
            continue
        if other.rank is None:
            continue
        old = latest.get(other.rank)
        if old is None or other.started_at >= old.started_at:
            latest[other.rank] = other
    pending = []
    missing = [r for r in range(world) if r not in latest]
    if missing:
        pending.append(f"no file for rank {', '.join(map(str, missing))} here (another host?)")
    worth_waiting = False
    for rank in sorted(latest):
        if rank < world and latest[rank].ended_at is None:
            status = rank_status(latest[rank])
            pending.append(f"rank {rank} {status}")
            worth_waiting = worth_waiting or status in ("running", "unfinished")
    return pending, worth_waiting


def _own_report(run_path: Path, heading: str | None) -> str:
    from memwatch.report import render

    run = load_run(run_path)
    text = render("text", run.info, run.steps, run.findings)
    if heading:
        text = f"memwatch: {heading}\n{text}"
    return text + _where(run_path)


def _where(path: Path) -> str:
    kind = "run directory" if path.is_dir() else "run file"
    return (
        f"  {kind:<17}{path}\n                   (memwatch report / memwatch tui to look again)\n"
    )


def print_end_of_run_report(run_path: Path, info: RunInfo) -> None:
    """Print ``end_of_run_report`` to stderr (where ``memwatch run`` puts its report)."""
    try:
        text = end_of_run_report(run_path, info)
    except RunFileError as exc:
        print(f"memwatch: could not read the run back: {exc}", file=sys.stderr)
        return
    if text:
        sys.stderr.write("\n" + text)
        sys.stderr.flush()


__all__ = [
    "end_of_run_report",
    "load_rank_directory",
    "load_rank_findings",
    "print_end_of_run_report",
    "rank_status",
    "render_rank_directory",
]
