"""The fake-CUDA tests (tests/cuda/) on a real GPU: the same behaviours, real allocator.

Skipped without a CUDA device. None of these has run on a GPU yet (see docs/cuda.md).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
import torch
from torch import nn

from memwatch import memwatch

pytestmark = pytest.mark.gpu

MiB = 1024 * 1024


def _step(model: nn.Module, opt: torch.optim.Optimizer, batch: int) -> None:
    model(torch.randn(batch, 1024, device="cuda")).square().mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _epoch_log() -> list[tuple[Any, ...]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    log = []
    for _ in range(2):
        torch.cuda.reset_peak_memory_stats()
        for batch in (4096, 1024, 256):  # the largest step first
            _step(model, opt, batch)
        stats = torch.cuda.memory_stats()
        log.append((torch.cuda.max_memory_allocated(), stats["allocated_bytes.all.peak"]))
    del model, opt
    torch.cuda.empty_cache()
    return log


def test_the_users_peak_statistics_read_the_same_with_and_without_memwatch() -> None:
    without = _epoch_log()
    with memwatch(store=False) as mw:
        with_memwatch = _epoch_log()
    assert with_memwatch == without
    peaks = [s.peak_allocated_bytes for s in mw.steps]
    assert peaks[0] is not None and peaks[0] > peaks[2]  # memwatch keeps per-step peaks


def test_each_step_reads_the_allocator_statistics_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    raw = torch._C._cuda_memoryStats

    def counting(device: int) -> Any:
        calls.append(device)
        return raw(device)

    monkeypatch.setattr(torch._C, "_cuda_memoryStats", counting)
    model = nn.Linear(1024, 1024).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        _step(model, opt, 8)
        calls.clear()
        for _ in range(5):
            _step(model, opt, 8)
    assert len(mw.steps) == 6 and len(calls) == 5


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_a_step_on_gpu_1_is_read_from_gpu_1() -> None:
    previous = torch.cuda.current_device()
    try:
        with memwatch(store=False) as mw:
            torch.cuda.set_device(1)
            model = nn.Linear(1024, 1024).cuda()
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            _step(model, opt, 8)
            expected = torch.cuda.memory_allocated(1)
        assert mw.info is not None and mw.info.device_index == 1
        assert mw.steps[-1].allocated_bytes == expected
    finally:
        torch.cuda.set_device(previous)


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    return done.stdout.strip()


def test_a_cpu_program_on_a_gpu_host_never_initialises_cuda() -> None:
    out = _run(
        """
        import torch
        from torch import nn
        from memwatch import memwatch
        with memwatch(store=False) as mw:
            model = nn.Linear(8, 8)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            for _ in range(3):
                model(torch.randn(4, 8)).sum().backward()
                opt.step()
        print(torch.cuda.is_initialized(), mw.steps[0].allocated_bytes, mw.info.device_type)
        """
    )
    assert out == "False None cpu"


def test_a_budget_is_applied_when_the_program_initialises_cuda_and_restored() -> None:
    out = _run(
        """
        import torch
        from memwatch import memwatch
        with memwatch(budget="1GiB", store=False):
            before = torch.cuda.is_initialized()
            torch.cuda.set_device(0)
            total = torch.cuda.get_device_properties(0).total_memory
            inside = torch.cuda.get_per_process_memory_fraction(0) * total / 2**30
        print(before, round(inside, 3), torch.cuda.get_per_process_memory_fraction(0))
        """
    )
    assert out == "False 1.0 1.0"


def test_a_fraction_the_user_sets_during_the_watch_is_theirs() -> None:
    device = torch.cuda.current_device()
    before = torch.cuda.get_per_process_memory_fraction(device)
    try:
        with memwatch(budget="1GiB", store=False):
            torch.cuda.set_per_process_memory_fraction(0.75, device)
        assert torch.cuda.get_per_process_memory_fraction(device) == 0.75
    finally:
        torch.cuda.set_per_process_memory_fraction(before, device)


def test_an_oom_records_the_allocators_limit() -> None:
    torch.cuda.empty_cache()
    device = torch.cuda.current_device()
    with memwatch(budget="512MiB", store=False) as mw, pytest.raises(torch.OutOfMemoryError):
        torch.empty(1024 * MiB, dtype=torch.uint8, device="cuda")
    (event,) = [e for e in mw.events if e.kind == "oom"]
    total = torch.cuda.get_device_properties(device).total_memory
    allowed = int(512 * MiB / total * total)
    assert abs(event.data["device_limit_bytes"] - allowed) <= 2 * MiB
    assert "device_allocated_bytes" not in event.data


def test_nvml_reads_the_device_found_by_uuid() -> None:
    pynvml = pytest.importorskip("pynvml")
    model = nn.Linear(8, 8).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        model(torch.randn(2, 8, device="cuda")).sum().backward()
        opt.step()
    used = mw.steps[0].device_used_bytes
    assert used is not None and used > 0
    pynvml.nvmlInit()
    try:
        uuid = str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)
        prefix = "MIG-" if "MIG" in torch.cuda.get_device_name() else "GPU-"
        handle = pynvml.nvmlDeviceGetHandleByUUID(prefix + uuid)
        total = pynvml.nvmlDeviceGetMemoryInfo(handle).total
    finally:
        pynvml.nvmlShutdown()
    assert used <= total
