"""The CUDA paths: the allocator's per-process limit as budget, real OOMs, the search.

Skipped without a CUDA device (the ``gpu`` marker, see tests/conftest.py).
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import _len_torch_dispatch_stack

import memwatch
from memwatch import memwatch as watch

pytestmark = pytest.mark.gpu

MiB = 1024 * 1024


def fraction() -> float:
    return float(torch.cuda.get_per_process_memory_fraction(torch.cuda.current_device()))


def test_the_budget_is_the_allocators_limit_and_is_restored() -> None:
    # GIVEN the process's memory fraction before a watch
    before = fraction()
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    depth = _len_torch_dispatch_stack()
    # WHEN a watch with a 1 GiB budget runs
    with watch(budget="1GiB", store=False) as mw:
        inside = fraction()
        no_mode = _len_torch_dispatch_stack() == depth
        tensors = mw._budget.tensors
    # THEN the allocator limited the process to 1 GiB (no per-op interception on CUDA)
    assert inside == pytest.approx(1024 * MiB / total, rel=1e-6)
    assert no_mode and tensors is None
    # AND the fraction is back afterwards
    assert fraction() == before


def test_a_real_allocator_oom_is_recorded_with_its_holders() -> None:
    torch.cuda.empty_cache()
    # GIVEN a 512 MiB budget with 256 MiB held by `held`
    with watch(budget="512MiB", store=False) as mw:
        held = torch.empty(256 * MiB // 4, device="cuda")
        # WHEN 384 MiB more are requested
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(384 * MiB // 4, device="cuda")
        line = sys._getframe().f_lineno - 1
    # THEN the OOM event has the user's line, the size asked, bytes in use and `held`
    (event,) = [e for e in mw.events if e.kind == "oom"]
    assert event.location is not None and event.location.line == line
    assert event.data["requested_bytes"] >= 384 * MiB
    assert event.data["in_use_bytes"] >= 256 * MiB
    holders = {h["name"]: h["bytes"] for h in event.data["holders"]}
    assert holders["held"] == 256 * MiB
    del held


def _cuda_step(model: nn.Module, opt: torch.optim.Optimizer, batch: int) -> None:
    x = torch.randn(batch, 1024, device="cuda")
    loss = model(x).square().mean()
    loss.backward()
    opt.step()


def test_a_retry_inside_except_on_cuda_is_reported() -> None:
    torch.cuda.empty_cache()
    torch.manual_seed(0)
    # GIVEN a back-off that retries inside `except` under a 1 GiB budget
    with watch(budget="1GiB", store=False) as mw:
        model = nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024)).cuda()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def fit(batch: int) -> int | None:
            try:
                x = torch.randn(batch, 1024, device="cuda")
                pred = model(x)
                loss = pred.square().mean()
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                return batch
            except torch.OutOfMemoryError:
                return fit(batch // 2) if batch > 64 else None  # WHEN it retries in here

        fit(65536)
    # THEN the retry is reported as holding the failed attempt
    finding = next(f for f in mw.findings if f.kind == "oom-retry-loop")
    assert finding.bytes is not None and finding.bytes > 64 * MiB
    assert finding.evidence["in_except_block"] is True


def test_find_batch_size_on_cuda_releases_memory_and_the_cache() -> None:
    torch.cuda.empty_cache()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(batch: int) -> None:
        try:
            _cuda_step(model, opt, batch)
        finally:
            opt.zero_grad(set_to_none=True)

    step(8)  # warm-up: cuBLAS keeps its workspace allocated after the first matmul
    baseline = torch.cuda.memory_allocated()
    # GIVEN a watch with a 1 GiB budget, WHEN the largest batch is searched
    with watch(budget="1GiB", store=False):
        result = memwatch.find_batch_size(step, 1 << 17)
        after = torch.cuda.memory_allocated()
        cached = torch.cuda.memory_reserved() - after
    # THEN a size was found below the start, after at least one real OOM
    assert result.batch_size is not None and result.batch_size < 1 << 17
    assert result.ooms
    # AND fitting trials peaked within the margin, failing ones are recorded
    assert result.limit_bytes is not None
    assert all(p is not None and p <= result.limit_bytes for s, f, p in result.trials if f)
    # AND nothing is left allocated, and the cache was emptied
    assert after == baseline
    assert cached < 64 * MiB  # what is left is segment rounding, not freed blocks
