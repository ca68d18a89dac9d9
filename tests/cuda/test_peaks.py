"""memwatch measures the peak within each step without changing the user's peaks."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from memwatch import memwatch
from tests.cuda.steps import Loop
from tests.fakecuda import FakeCuda

MiB = 1024 * 1024
SIZES = (64 * MiB, 16 * MiB, 4 * MiB)  # the largest step first: a per-step peak differs


def users_epoch_log(fake: FakeCuda) -> list[tuple[Any, ...]]:
    """A user's own per-epoch memory log, as Lightning's DeviceStatsMonitor or the
    transformers Trainer keep it: reset at the epoch start, read at its end."""
    loop = Loop(fake)
    torch.cuda.set_device(0)
    log = []
    for _epoch in range(2):
        torch.cuda.reset_peak_memory_stats()
        for size in SIZES:
            loop.step(size)
        stats = torch.cuda.memory_stats()
        log.append(
            (
                torch.cuda.max_memory_allocated(),
                torch.cuda.max_memory_reserved(),
                stats["allocated_bytes.all.peak"],
                stats["requested_bytes.large_pool.peak"],
                stats["segment.all.peak"],
            )
        )
    return log


def test_the_users_peak_statistics_read_the_same_with_and_without_memwatch(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a user's per-epoch peak log on a fresh device, without memwatch
    without = users_epoch_log(fake_cuda)
    # WHEN the same program runs on a fresh device under memwatch
    fresh = FakeCuda().install(monkeypatch)
    with memwatch(store=False) as mw:
        with_memwatch = users_epoch_log(fresh)
    # THEN the user's log is the same (the epoch's largest step, not the last one)
    assert with_memwatch == without
    assert without[0][0] == 64 * MiB
    # AND memwatch still has the peak within each step
    assert [s.peak_allocated_bytes for s in mw.steps] == list(SIZES) * 2
    assert all(s.allocated_bytes == 0 for s in mw.steps)


def test_the_users_reset_inside_a_step_keeps_both_views_exact(fake_cuda: FakeCuda) -> None:
    # GIVEN a watched step that peaks at 64 MiB, then the user resets the peak
    loop = Loop(fake_cuda)
    with memwatch(store=False) as mw:
        torch.cuda.set_device(0)
        loop.step(8 * MiB)
        big = fake_cuda.alloc(64 * MiB)
        fake_cuda.free(big)
        torch.cuda.reset_peak_memory_stats()  # WHEN the user resets mid-step
        loop.step(8 * MiB)
        users_peak = torch.cuda.max_memory_allocated()
    # THEN the user sees the peak since their reset, memwatch the step's own peak
    assert users_peak == 8 * MiB
    assert [s.peak_allocated_bytes for s in mw.steps] == [8 * MiB, 64 * MiB]
    # AND after the watch the user's statistics stay as if memwatch had never run
    assert torch.cuda.max_memory_allocated() == 8 * MiB


def accelerator_epoch_log(fake: FakeCuda) -> list[int]:
    """The same log through the device-generic API (torch.accelerator)."""
    loop = Loop(fake)
    torch.cuda.set_device(0)
    log = []
    for _epoch in range(2):
        torch.accelerator.reset_peak_memory_stats(0)
        for size in SIZES:
            loop.step(size)
        log.append(torch.accelerator.max_memory_allocated(0))
    return log


def test_the_accelerator_apis_peaks_read_the_same_with_and_without_memwatch(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN torch.accelerator's peak log without memwatch
    without = accelerator_epoch_log(fake_cuda)
    # WHEN the same runs under memwatch on a fresh device
    fresh = FakeCuda().install(monkeypatch)
    with memwatch(store=False):
        with_memwatch = accelerator_epoch_log(fresh)
    # THEN it reads the same: each epoch's largest step
    assert with_memwatch == without == [64 * MiB, 64 * MiB]
