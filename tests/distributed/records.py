"""Hand-made step records and run files of several ranks, for tests that need no torch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from memwatch.records import Finding, RunInfo, StepRecord
from memwatch.store import RunWriter
from tests.records import make_step

MiB = 1024 * 1024


def step(
    i: int,
    saved: int = 0,
    rss: int | None = 300 * MiB,
    allocated: int | None = None,
    boundary: str = "optimizer",
) -> StepRecord:
    """One step as a CPU run records it (no allocator numbers unless ``allocated``)."""
    return make_step(
        i,
        boundary=boundary,
        allocated_bytes=allocated,
        peak_allocated_bytes=allocated,
        saved_bytes=saved,
        saved_peak_bytes=saved + 3 * MiB,  # one forward's activations on top of what is kept
        rss_bytes=rss,
    )


def steps(n: int, saved: Callable[[int], int] = lambda i: 0, **kw: object) -> list[StepRecord]:
    return [step(i, saved=saved(i), **kw) for i in range(n)]  # type: ignore[arg-type]


def rank_info(rank: int | None, world: int | None = 2, **overrides: object) -> RunInfo:
    base: dict[str, object] = {
        "id": f"run-{rank}",
        "script": "ddp_training.py",
        "argv": ("ddp_training.py",),
        "started_at": 1000.0,
        "python": "3.11",
        "torch": "2.13.0",
        "device_type": "cpu",
        "device_name": "cpu",
        "device_total_bytes": None,
        "pid": 4242,
        "host": "elsewhere",
        "rank": rank,
        "world_size": world,
        "local_rank": rank,
    }
    base.update(overrides)
    return RunInfo(**base)  # type: ignore[arg-type]


def write_run(
    path: Path,
    info: RunInfo,
    records: Sequence[StepRecord],
    findings: Sequence[Finding] = (),
    ended: bool = True,
) -> Path:
    """A run file as a finished (or, with ``ended=False``, a killed) rank leaves it."""
    writer = RunWriter(path, info)
    for record in records:
        writer.add_step(record)
    for finding in findings:
        writer.put_finding(finding)
    writer.commit()
    if ended:
        from dataclasses import replace

        writer.close(replace(info, ended_at=info.started_at + 60, exit_status=0))
    else:  # committed steps, but no end recorded: as a SIGKILLed rank leaves it
        writer.close()
    return path
