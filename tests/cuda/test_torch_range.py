"""Private and newer torch APIs are feature-detected, and each fallback works."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from memwatch import memwatch
from tests.cuda.steps import Loop
from tests.fakecuda import FakeCuda

_top = torch._C._autograd._top_saved_tensors_default_hooks


def test_without_the_top_of_hooks_helper_the_saved_tensor_hooks_are_still_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a torch without _top_saved_tensors_default_hooks
    monkeypatch.delattr(torch._C._autograd, "_top_saved_tensors_default_hooks")
    model = nn.Linear(4, 4)
    # WHEN a watch runs and ends
    with memwatch(store=False) as mw:
        model(torch.randn(2, 4)).sum().backward()
        mw.step()
    # THEN its saved-tensor hooks are gone, and the bytes were still counted
    assert _top(False) is None
    assert mw.steps[0].saved_peak_bytes > 0


def test_the_out_of_memory_class_falls_back_to_older_names() -> None:
    from memwatch.collect.oom import oom_error_class  # (new: imported here so the
    # other tests of this file also run against older memwatch)

    # GIVEN torches of different ages, WHEN the OOM class is looked up, THEN
    class Older(RuntimeError):
        pass

    newest = types.SimpleNamespace(OutOfMemoryError=torch.OutOfMemoryError)
    older = types.SimpleNamespace(cuda=types.SimpleNamespace(OutOfMemoryError=Older))
    assert oom_error_class(newest) is torch.OutOfMemoryError  # 2.5+: torch.OutOfMemoryError
    assert oom_error_class(older) is Older  # before: torch.cuda.OutOfMemoryError
    neither = oom_error_class(types.SimpleNamespace())
    assert issubclass(neither, RuntimeError)  # a private class: isinstance checks still work


def test_without_torchs_lazy_call_queue_the_observer_attaches_at_the_first_cuda_step(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a torch without torch.cuda._lazy_call, and a watch started before CUDA
    monkeypatch.delattr(torch.cuda, "_lazy_call")
    loop = Loop(fake_cuda)
    with memwatch(store=False) as mw:
        torch.cuda.set_device(0)
        loop.step(1024)  # WHEN a first CUDA step ends
        with pytest.raises(torch.OutOfMemoryError):
            fake_cuda.alloc(100 * 1024**3)
    # THEN the allocator's observer was attached there: the OOM has its numbers
    (event,) = [e for e in mw.events if e.kind == "oom"]
    assert event.data["device_limit_bytes"] == 80 * 1024**3


def test_without_torchs_lazy_call_queue_a_budget_says_it_cannot_limit_the_gpu(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delattr(torch.cuda, "_lazy_call")
    with memwatch(budget="8GiB", store=False):
        torch.cuda.set_device(0)
    assert fake_cuda.allocators[0].fraction is None
    assert "budget is not applied on the GPU" in capsys.readouterr().err
