"""One allocator read per step."""

from __future__ import annotations

import torch

from memwatch import memwatch
from tests.cuda.steps import Loop
from tests.fakecuda import FakeCuda

MiB = 1024 * 1024


def test_each_step_reads_the_allocator_statistics_once(fake_cuda: FakeCuda) -> None:
    # GIVEN a watched loop on GPU 0 (its first step describes the device once)
    loop = Loop(fake_cuda)
    with memwatch(store=False) as mw:
        torch.cuda.set_device(0)
        loop.step(MiB)
        fake_cuda.reset_counts()
        # WHEN five more steps run
        for _ in range(5):
            loop.step(MiB)
    # THEN each step end read the statistics once and reset the peaks once, nothing else
    assert len(mw.steps) == 6
    assert fake_cuda.calls["_cuda_memoryStats"] == 5
    assert fake_cuda.calls["_cuda_resetPeakMemoryStats"] == 5
    assert fake_cuda.calls["_get_device_properties"] == 0
    assert fake_cuda.calls["cudaMemGetInfo"] == 0
