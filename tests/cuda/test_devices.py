"""Which device memwatch reads: lazily, per step, the rank's own; nothing before CUDA exists."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from memwatch import memwatch
from tests.cuda.steps import Loop
from tests.fakecuda import FakeCuda

MiB = 1024 * 1024


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_reads_its_own_gpu(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch, rank: int
) -> None:
    # GIVEN rank `rank` of two under torchrun, watched from before its set_device
    for name, value in (("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", 2)):
        monkeypatch.setenv(name, str(value))
    loop = Loop(fake_cuda)
    with memwatch(store=False) as mw:
        # WHEN the script selects its GPU and trains with 8 MiB of weights there
        torch.cuda.set_device(rank)
        weights = fake_cuda.alloc(8 * MiB)
        for _ in range(3):
            loop.step(32 * MiB)
    # THEN every step reads the rank's own GPU
    assert [s.allocated_bytes for s in mw.steps] == [8 * MiB] * 3
    assert [s.peak_allocated_bytes for s in mw.steps] == [40 * MiB] * 3
    assert mw.info is not None and mw.info.device_index == rank
    assert mw.info.device_type == "cuda"
    # AND the other rank's GPU is neither read nor reset
    other = 1 - rank
    assert fake_cuda.device_calls[("_cuda_memoryStats", other)] == 0
    assert fake_cuda.device_calls[("_cuda_resetPeakMemoryStats", other)] == 0
    fake_cuda.free(weights)


def test_local_rank_names_the_device_when_the_script_never_selects_one(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN rank 1 that puts its tensors on cuda:1 without torch.cuda.set_device
    monkeypatch.setenv("LOCAL_RANK", "1")
    loop = Loop(fake_cuda)
    with memwatch(store=False) as mw:
        weights = fake_cuda.alloc(8 * MiB, device=1)
        loop.step(4 * MiB, device=1)
    # THEN the step is read from GPU 1, although the current device stayed 0
    assert torch.cuda.current_device() == 0
    assert mw.steps[0].allocated_bytes == 8 * MiB
    fake_cuda.free(weights)


def test_the_device_is_resolved_from_what_the_step_touched_first() -> None:
    from memwatch.collect.cuda import resolve_device  # (new: imported here so the
    # other tests of this file also run against older memwatch)

    # GIVEN the candidates, WHEN resolved, THEN: touched > selected > LOCAL_RANK > 0
    assert resolve_device(touched=3, current=1, rank=2, count=4) == 3
    assert resolve_device(touched=None, current=1, rank=2, count=4) == 1
    assert resolve_device(touched=None, current=0, rank=2, count=4) == 2
    assert resolve_device(touched=None, current=0, rank=2, count=1) == 0  # one visible GPU
    assert resolve_device(touched=None, current=0, rank=None, count=4) == 0


def cpu_training() -> None:
    model = nn.Linear(8, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        model(torch.randn(4, 8)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()


def test_a_cpu_program_on_a_gpu_host_never_initialises_cuda(
    fake_cuda: FakeCuda,
) -> None:
    # GIVEN the CUDA calls a CPU-only program makes on its own
    cpu_training()
    own_calls = dict(fake_cuda.calls)
    fake_cuda.reset_counts()
    # WHEN it runs under memwatch
    with memwatch(store=False) as mw:
        cpu_training()
    # THEN memwatch made no CUDA call of its own, and CUDA is still uninitialised
    assert dict(fake_cuda.calls) == own_calls
    assert fake_cuda.inits == 0 and not torch.cuda.is_initialized()
    # AND the device numbers are unknown (None), not zeros of a device never used
    assert all(s.allocated_bytes is None and s.peak_allocated_bytes is None for s in mw.steps)
    assert mw.info is not None and mw.info.device_type == "cpu"
    assert mw.info.device_index is None
    # AND torch's allocator bindings are back as they were
    assert torch._C._cuda_memoryStats.__self__ is fake_cuda  # type: ignore[attr-defined]
