"""Hand-made runs for the dashboard tests: fixed times and sizes, no torch, no clock drift."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from memwatch_tui.app import MemwatchApp
from memwatch_tui.feed import FakeFeed
from textual.app import App
from textual.pilot import Pilot

from memwatch.records import Finding, Holder, Location, RunInfo, StepRecord
from memwatch.store import RunWriter

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
GiB = 1 << 30
STARTED = 1_700_000_000.0
SOURCE_LINES = [f"# line {n}" for n in range(1, 61)]
SOURCE_LINES[41] = "        total_loss += loss  # keeps every step's graph alive"


def make_info(**changes: object) -> RunInfo:
    """A finished CUDA run of ``train.py --lr 0.1`` that took 2:05."""
    info = RunInfo(
        id="run-1",
        script="train.py",
        argv=("train.py", "--lr", "0.1"),
        started_at=STARTED,
        python="3.11.7",
        torch="2.4.0",
        device_type="cuda",
        device_name="NVIDIA H100 80GB HBM3",
        device_total_bytes=80 * GiB,
        pid=4242,
        host="test-host",
        ended_at=STARTED + 125.0,
        exit_status=0,
    )
    return replace(info, **changes)  # type: ignore[arg-type]


def make_step(step: int, cpu: bool = False, spike_at: int | None = None) -> StepRecord:
    """A step of a run leaking 4 MiB of autograd graph per step, with an optional spike."""
    allocated = GiB + step * 4 * MiB
    spike = 2 * GiB if step == spike_at else 0
    return StepRecord(
        step=step,
        started_at=STARTED + step * 0.5,
        duration_s=0.5,
        boundary="optimizer",
        allocated_bytes=None if cpu else allocated,
        reserved_bytes=None if cpu else allocated + 512 * MiB,
        peak_allocated_bytes=None if cpu else allocated + 600 * MiB + spike,
        device_used_bytes=None,
        saved_bytes=200 * MiB + step * 4 * MiB,
        saved_peak_bytes=900 * MiB,
        saved_stale_bytes=step * 4 * MiB,
        rss_bytes=3 * GiB + step * MiB,
        forward_calls=1,
        backward_calls=1,
        oom_events=0,
    )


def make_steps(
    n: int, start: int = 0, cpu: bool = False, spike_at: int | None = None
) -> list[StepRecord]:
    return [make_step(s, cpu, spike_at) for s in range(start, start + n)]


def make_findings() -> list[Finding]:
    where = Location("train.py", 42, "train")
    return [
        Finding(
            kind="host-memory-growth",
            severity="info",
            title="RSS grows 1.0 MiB per step",
            detail="Process RSS rose from 3.0 GiB to 3.2 GiB over 200 steps.",
            first_step=20,
            fix="Check DataLoader workers for Python objects touched per batch.",
            growth_per_step_bytes=MiB,
        ),
        Finding(
            kind="graph-accumulation",
            severity="error",
            title="total_loss keeps every step's autograd graph alive",
            detail="Autograd saved tensors still alive at step end grow by 4.0 MiB per step.",
            first_step=3,
            fix="Accumulate a number, not the graph: total_loss += loss.item().",
            location=where,
            variable="total_loss",
            bytes=800 * MiB,
            growth_per_step_bytes=4 * MiB,
            evidence={
                "saved_bytes_first": 200 * MiB,
                "saved_bytes_last": 1000 * MiB,
                "steps": 200,
                "r2": 0.9987,
            },
        ),
        Finding(
            kind="lingering-step-locals",
            severity="warning",
            title="pred and loss of the previous step are alive at the next forward",
            detail="The peak of each step includes 600 MiB of the previous step's tensors.",
            first_step=1,
            fix="Delete pred and loss at the end of the loop body (del pred, loss).",
            location=Location("missing_file.py", 7, "step"),
            variable="pred",
            bytes=600 * MiB,
        ),
    ]


def make_holders(step: int) -> list[Holder]:
    where = Location("train.py", 42, "train")
    return [
        Holder(step, "total_loss", 4 * MiB * step + 200 * MiB, 3 * step + 2, where),
        Holder(step, "model.cache", 64 * MiB, 4, Location("model.py", 17, "forward")),
    ]


def write_run(
    path: Path,
    info: RunInfo,
    steps: Sequence[StepRecord] = (),
    holders: Sequence[Holder] = (),
    findings: Sequence[Finding] = (),
    close: bool = True,
) -> RunWriter:
    """Write a run file the way the watched process does (commit per batch, close at end)."""
    writer = RunWriter(path, replace(info, ended_at=None, exit_status=None))
    for record in steps:
        writer.add_step(record)
    writer.add_holders(holders)
    for finding in findings:
        writer.put_finding(finding)
    writer.commit()
    if close:
        writer.close(info)
    return writer


def fake_feed(n: int = 200, cpu: bool = False, **info: object) -> FakeFeed:
    holders = make_holders(50) + make_holders(150)
    return FakeFeed(
        make_info(**info),
        make_steps(n, cpu=cpu, spike_at=120),
        holders,
        make_findings(),
        label="memwatch-runs/train-20231114-221320.db",
    )


def fixed_clock() -> float:
    return STARTED + 61.0


def never_alive(info: RunInfo) -> bool | None:
    return None


def make_app(source: FakeFeed | None = None, **kwargs: object) -> MemwatchApp:
    """The dashboard on a fake run with a fixed clock (for Pilot tests and snapshots)."""
    options: dict[str, object] = {"clock": fixed_clock, "alive": never_alive}
    options.update(kwargs)
    return MemwatchApp(source if source is not None else fake_feed(), **options)  # type: ignore[arg-type]


def drive(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (no asyncio pytest plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def settle(pilot: Pilot[object], app: App[object] | None = None) -> None:
    """Wait until every worker, and the workers their results started, have finished."""
    target = app if app is not None else pilot.app
    for _ in range(50):
        await target.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.is_running for w in target.workers):
            await pilot.pause()
            if not any(w.is_running for w in target.workers):
                return
    raise AssertionError("workers did not settle")
