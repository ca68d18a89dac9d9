"""CUDA paths of the foundation: allocator numbers, NVML totals, real OOMs. Skipped on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from memwatch import memwatch

pytestmark = pytest.mark.gpu


def test_cuda_steps_record_allocated_reserved_and_in_step_peak() -> None:
    # GIVEN a model on the GPU
    model = nn.Linear(1024, 1024).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # WHEN it trains under a watch
    with memwatch(store=False) as mw:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(256, 1024, device="cuda")).sum().backward()
            opt.step()
    # THEN every step has allocator numbers, the peak covers the activations
    for s in mw.steps:
        assert s.allocated_bytes is not None and s.allocated_bytes >= 4 * 1024 * 1024
        assert s.reserved_bytes is not None and s.reserved_bytes >= s.allocated_bytes
        assert s.peak_allocated_bytes is not None
        assert s.peak_allocated_bytes >= s.allocated_bytes + 256 * 1024 * 4
    assert mw.info is not None and mw.info.device_type == "cuda"
    assert mw.info.device_total_bytes and mw.info.device_total_bytes > 0


def test_nvml_device_total_is_recorded_when_available() -> None:
    pytest.importorskip("pynvml")
    with memwatch(store=False) as mw:
        model = nn.Linear(8, 8).cuda()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model(torch.randn(2, 8, device="cuda")).sum().backward()
        opt.step()
    assert mw.steps[0].device_used_bytes is not None
    assert mw.steps[0].device_used_bytes > 0


def test_a_real_allocator_oom_is_recorded_with_the_requested_size() -> None:
    total = torch.cuda.get_device_properties(0).total_memory
    with memwatch(store=False) as mw:
        try:
            torch.empty(total * 4, dtype=torch.uint8, device="cuda")
        except torch.OutOfMemoryError:
            pass
    ooms = [e for e in mw.events if e.kind == "oom"]
    assert len(ooms) >= 1
    assert ooms[0].data["requested_bytes"] >= total
