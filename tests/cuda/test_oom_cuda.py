"""OOMs on CUDA: what the allocator's observer reports, and OOMs that are RuntimeErrors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import memwatch
from memwatch import memwatch as watch
from tests.cuda.steps import Loop
from tests.fakecuda import FakeCuda

MiB = 1024 * 1024
GiB = 1024 * MiB


def oom_events(mw: memwatch.Watch) -> list[dict]:
    return [e.data for e in mw.events if e.kind == "oom"]


@pytest.mark.parametrize(
    ("fraction", "limit"), [(None, 80 * GiB), (0.5, 40 * GiB)], ids=["total", "fraction"]
)
def test_the_observers_third_argument_is_recorded_as_the_allocators_limit(
    fake_cuda: FakeCuda, fraction: float | None, limit: int
) -> None:
    # GIVEN a watch started before CUDA, a program that (maybe) sets its own fraction
    with watch(store=False) as mw:
        torch.cuda.set_device(0)
        if fraction is not None:
            torch.cuda.set_per_process_memory_fraction(fraction, 0)
        held = fake_cuda.alloc(30 * GiB)
        # WHEN an allocation fails
        with pytest.raises(torch.OutOfMemoryError):
            fake_cuda.alloc(60 * GiB)
    # THEN the OOM records the limit the allocator enforced, not "device allocated"
    (data,) = oom_events(mw)
    assert data["device_limit_bytes"] == limit
    assert "device_allocated_bytes" not in data
    assert data["requested_bytes"] == 60 * GiB
    assert data["device"] == 0
    fake_cuda.free(held)


def test_a_cuda_error_out_of_memory_in_forward_is_recorded(fake_cuda: FakeCuda) -> None:
    # GIVEN a model whose forward fails with a launch-time "CUDA error: out of memory"
    class Failing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise fake_cuda.launch_out_of_memory()

    # WHEN it runs under a watch
    with watch(store=False) as mw:
        torch.cuda.set_device(0)
        with pytest.raises(RuntimeError, match="CUDA error: out of memory"):
            Failing()(torch.randn(2))
    # THEN it is an OOM event, with the error's type and message
    (data,) = oom_events(mw)
    assert data["error_type"] == "RuntimeError"
    assert data["message"].startswith("CUDA error: out of memory")


def test_an_mps_oom_that_ends_the_watch_is_recorded_once(fake_cuda: FakeCuda) -> None:
    # GIVEN an OOM raised as a plain RuntimeError outside any forward or backward
    with pytest.raises(RuntimeError):  # noqa: SIM117 (the watch must see the error)
        with watch(store=False) as mw:
            raise fake_cuda.mps_out_of_memory()
    # THEN the watch records it as it ends
    (data,) = oom_events(mw)
    assert data["message"].startswith("MPS backend out of memory")


def test_find_batch_size_treats_a_cublas_allocation_failure_as_out_of_memory(
    fake_cuda: FakeCuda,
) -> None:
    # GIVEN a step whose cuBLAS handle cannot be allocated above 40 MiB of activations
    loop = Loop(fake_cuda)
    torch.cuda.set_device(0)

    def step(batch: int) -> None:
        if batch > 40:
            raise fake_cuda.cublas_alloc_failure()
        loop.step(batch * MiB)

    # WHEN the largest batch is searched under a watch
    with watch(store=False) as mw:
        result = memwatch.find_batch_size(step, 32, max_size=64)
    # THEN the failure counts as an OOM, the search settles on 40, and it is recorded
    assert result.batch_size == 40
    assert 41 in result.ooms or any(b > 40 for b in result.ooms)
    assert oom_events(mw) and all(d["error_type"] == "RuntimeError" for d in oom_events(mw))


def test_a_failure_that_is_not_out_of_memory_still_escapes_the_search(
    fake_cuda: FakeCuda,
) -> None:
    torch.cuda.set_device(0)

    def step(batch: int) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        memwatch.find_batch_size(step, 8)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("CUDA out of memory. Tried to allocate 2.00 GiB.", True),
        ("CUDA error: out of memory", True),
        ("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", True),
        ("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if ...", True),
        ("MPS backend out of memory (MPS allocated: 1 GB)", True),
        ("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes", True),
        ("CUDA error: an illegal memory access was encountered", False),
        ("mat1 and mat2 shapes cannot be multiplied", False),
    ],
)
def test_out_of_memory_runtime_errors_are_recognised_by_message(
    message: str, expected: bool
) -> None:
    from memwatch.collect.oom import is_oom_error  # (new: imported here so the
    # other tests of this file also run against older memwatch)

    assert is_oom_error(RuntimeError(message)) is expected
    assert is_oom_error(ValueError(message)) is False
