"""--budget on CUDA: the rank's own device, applied lazily, restored without overwriting."""

from __future__ import annotations

import pytest
import torch

from memwatch import memwatch
from tests.cuda.steps import Loop
from tests.fakecuda import FakeCuda

MiB = 1024 * 1024
GiB = 1024 * MiB


def fractions(fake: FakeCuda) -> list[float | None]:
    return [a.fraction for a in fake.allocators]


def test_the_budget_limits_the_ranks_own_gpu_once_the_program_initialises_cuda(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN rank 1 under torchrun with an 8 GiB budget
    monkeypatch.setenv("LOCAL_RANK", "1")
    with memwatch(budget="8GiB", store=False):
        # THEN memwatch initialised nothing by itself
        assert not torch.cuda.is_initialized()
        # WHEN the script selects its GPU (which initialises CUDA)
        torch.cuda.set_device(1)
        inside = fractions(fake_cuda)
        Loop(fake_cuda).step(MiB)
    # THEN GPU 1 was limited to 8 GiB, GPU 0 never touched; restored afterwards
    assert inside == [None, 8 / 80]
    assert fractions(fake_cuda) == [None, 1.0]


def test_a_fraction_the_user_sets_during_the_watch_is_theirs(fake_cuda: FakeCuda) -> None:
    # GIVEN a budget, WHEN the program sets its own fraction during the watch
    with memwatch(budget="8GiB", store=False):
        torch.cuda.set_device(0)
        torch.cuda.set_per_process_memory_fraction(0.25, 0)
    # THEN the watch's end does not overwrite it
    assert fractions(fake_cuda)[0] == 0.25


def test_without_the_fraction_getter_a_restore_to_the_default_is_said(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a torch without get_per_process_memory_fraction and a fraction set earlier
    monkeypatch.delattr(torch.cuda, "get_per_process_memory_fraction")
    torch.cuda.set_device(0)
    torch.cuda.set_per_process_memory_fraction(0.5, 0)
    # WHEN a budget watch ends, THEN it says it cannot restore the earlier fraction
    with memwatch(budget="8GiB", store=False):
        Loop(fake_cuda).step(MiB)
    assert "cannot report the memory fraction" in capsys.readouterr().err


def test_without_the_getter_a_budget_applied_at_initialisation_restores_quietly(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a torch without the getter, and a watch started before CUDA was initialised
    monkeypatch.delattr(torch.cuda, "get_per_process_memory_fraction")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with memwatch(budget="8GiB", store=False):
            torch.cuda.set_device(0)
            Loop(fake_cuda).step(MiB)
    # THEN the fraction before was the default (setting one initialises CUDA): restored
    assert fractions(fake_cuda)[0] == 1.0


def test_the_budget_caps_reserved_memory_not_live_tensor_bytes(fake_cuda: FakeCuda) -> None:
    # GIVEN a 48 MiB budget
    with memwatch(budget="48MiB", store=False):
        torch.cuda.set_device(0)
        blocks = [fake_cuda.alloc(12 * MiB), fake_cuda.alloc(12 * MiB)]
        blocks.append(fake_cuda.alloc(3 * MiB))  # a 1-10 MiB request reserves 20 MiB
        # WHEN 20 MiB more are asked, with 27 MiB of tensors alive
        with pytest.raises(torch.OutOfMemoryError):
            fake_cuda.alloc(20 * MiB)
    # THEN it ran out although live bytes (47 MiB) would stay under the budget: the
    # reserved segments (44 MiB, +20) would not
    assert torch.cuda.memory_allocated(0) == 27 * MiB
    assert torch.cuda.memory_reserved(0) == 44 * MiB
    fake_cuda.free(*blocks)


def test_a_budget_failing_inside_cuda_initialisation_never_fails_the_program(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a budget whose application fails (here: the device cannot be described)
    from memwatch.collect import cuda

    def broken(device: int) -> object:
        raise RuntimeError("no properties")

    monkeypatch.setattr(cuda, "device_facts", broken)
    with memwatch(budget="8GiB", store=False):
        # WHEN the program initialises CUDA, THEN it succeeds, with one line from memwatch
        torch.cuda.set_device(0)
        fake_cuda.free(fake_cuda.alloc(1024))
    assert torch.cuda.is_initialized()
    assert "memwatch: the budget on the GPU switched off" in capsys.readouterr().err
    assert fractions(fake_cuda) == [None, None]
