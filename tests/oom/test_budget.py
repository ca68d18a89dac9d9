"""The CPU budget: tracked tensor bytes, the CUDA-style OOM, per-step numbers, clean removal."""

from __future__ import annotations

import os
import pickle
import sys

import pytest
import torch
import torch.nn.modules.module as module_hooks
from torch import nn
from torch.utils._python_dispatch import _len_torch_dispatch_stack

from memwatch import memwatch
from memwatch.collect.budget import TensorTracker, budget_oom_message, cuda_style_size

KiB = 1024
MiB = 1024 * 1024


def floats(nbytes: int) -> torch.Tensor:
    return torch.empty(nbytes // 4, dtype=torch.float32)


def storage_bytes(*tensors: torch.Tensor | None) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if t is not None:
            storage = t.untyped_storage()
            seen[storage._cdata] = storage.nbytes()
    return sum(seen.values())


def test_the_allocation_that_crosses_the_budget_raises_a_cuda_style_oom() -> None:
    # GIVEN a 2 MiB budget with 1.5 MiB of tensors already alive
    with memwatch(budget="2MiB", store=False) as mw:
        held = floats(3 * MiB // 2)
        # WHEN a 1 MiB tensor is requested
        with pytest.raises(torch.OutOfMemoryError) as raised:
            torch.empty(MiB // 4, dtype=torch.float32)
        line = sys._getframe().f_lineno - 1
        live_after = mw._budget.tensors.live
    # THEN the error reads like the allocator's, and the refused tensor was never counted
    assert str(raised.value) == (
        "CUDA out of memory (memwatch budget). Tried to allocate 1024.00 KiB. "
        "1.50 MiB already allocated; budget 2.00 MiB. "
        "This limit is memwatch's simulated budget (--budget), not the device running out of "
        "memory. It counts live tensor bytes; on a GPU the same budget caps reserved memory, "
        "rounded to 2 MiB blocks and 20 MiB segments, and can run out sooner."
    )
    assert live_after == 3 * MiB // 2
    # AND the OOM event says where, how much was asked and in use, and who held it
    (event,) = [e for e in mw.events if e.kind == "oom"]
    assert event.location is not None
    assert event.location.file.endswith("test_budget.py")
    assert event.location.line == line
    assert event.location.function == sys._getframe().f_code.co_name
    assert event.data["requested_bytes"] == MiB
    assert event.data["in_use_bytes"] == 3 * MiB // 2
    assert event.data["budget_bytes"] == 2 * MiB
    assert event.data["source"] == "memwatch-budget"
    holders = {h["name"]: h["bytes"] for h in event.data["holders"]}
    assert holders["held"] == 3 * MiB // 2
    del held


def test_the_oom_event_is_json_and_holds_no_live_objects() -> None:
    # GIVEN / WHEN an OOM under a budget
    with memwatch(budget="1MiB", store=False) as mw:
        try:
            floats(2 * MiB)
        except torch.OutOfMemoryError:
            pass
    (event,) = [e for e in mw.events if e.kind == "oom"]
    # THEN its data is plain values (no frame, no exception object): it pickles as JSON would
    assert "frame" not in event.data and "exception" not in event.data
    pickle.dumps(dict(event.data))
    assert event.data["requested_bytes"] == 2 * MiB


def test_views_in_place_ops_and_frees_are_counted_exactly() -> None:
    with memwatch(track_tensors=True, store=False) as mw:
        tensors: TensorTracker = mw._budget.tensors
        # GIVEN a 64 KiB tensor
        a = floats(64 * KiB)
        assert tensors.live == 64 * KiB
        # WHEN views and in-place ops touch it, THEN nothing new is counted
        v = a.view(16, -1)[2:]
        a.add_(1.0)
        v.mul_(2.0)
        assert tensors.live == 64 * KiB
        # WHEN a new result is made, THEN its bytes are added
        b = a * 2
        assert tensors.live == 128 * KiB
        # WHEN an out= op resizes an empty tracked tensor, THEN its growth is counted
        out = torch.empty(0)
        torch.add(a, 1.0, out=out)
        assert tensors.live == 192 * KiB
        # WHEN the last references go, THEN the bytes come back
        del a, v
        assert tensors.live == 128 * KiB
        del b, out
        assert tensors.live == 0
        # AND the peak saw the highest point
        assert tensors.watermark == 192 * KiB


def test_track_tensors_gives_cpu_steps_allocated_and_peak_bytes() -> None:
    # GIVEN a small training loop with tensor tracking
    torch.manual_seed(0)
    with memwatch(track_tensors=True, store=False) as mw:
        model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 8))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            x, y = torch.randn(32, 64), torch.randint(0, 8, (32,))
            opt.zero_grad(set_to_none=True)
            pred = model(x)
            loss = nn.functional.cross_entropy(pred, y)
            loss.backward()
            opt.step()  # WHEN the step ends here
            alive = [*model.parameters(), *(p.grad for p in model.parameters()), x, y, pred, loss]
            expected = storage_bytes(*alive)
            record = mw.steps[-1]
            # THEN allocated is exactly the tensors alive at the step end
            assert record.allocated_bytes == expected
            # AND the peak within the step is above it (the activations saved for backward)
            assert record.peak_allocated_bytes is not None
            assert record.peak_allocated_bytes >= expected + 32 * 256 * 4
            assert record.reserved_bytes is None  # CPU: no cache, nothing invented
            del alive  # or the next step end would see this step's tensors through it


def test_without_tracking_cpu_steps_have_no_allocated_bytes() -> None:
    # GIVEN / WHEN a plain watch on CPU
    with memwatch(store=False) as mw:
        model = nn.Linear(8, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model(torch.randn(4, 8)).sum().backward()
        opt.step()
    # THEN no allocator numbers are made up
    assert mw.steps[0].allocated_bytes is None
    assert mw._budget is None


def test_stopping_the_watch_removes_the_mode_and_the_oom_observer() -> None:
    # GIVEN the dispatch-mode stack, the global module hooks, autograd's backward and
    # OutOfMemoryError.__init__ before a watch
    depth_before = _len_torch_dispatch_stack()
    init_before = torch.OutOfMemoryError.__init__
    backward_before = torch.autograd.backward
    hooks_before = dict(module_hooks._global_forward_hooks)
    with memwatch(budget="1MiB", store=False) as mw:
        assert _len_torch_dispatch_stack() == depth_before + 1
        assert torch.OutOfMemoryError.__init__ is not init_before
        tensors = mw._budget.tensors
    # WHEN it has stopped
    # THEN all are as before, and tensors beyond the old budget allocate without error
    assert _len_torch_dispatch_stack() == depth_before
    assert torch.OutOfMemoryError.__init__ is init_before
    assert torch.autograd.backward is backward_before
    assert dict(module_hooks._global_forward_hooks) == hooks_before
    big = floats(4 * MiB)
    assert tensors.live == 0 and not tensors.storages
    del big


def test_results_are_identical_with_and_without_tracking() -> None:
    def train() -> list[float]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(5):
            x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    # GIVEN a seeded run without memwatch, WHEN the same run is tracked under a budget
    plain = train()
    with memwatch(budget="64MiB", store=False):
        tracked = train()
    # THEN every loss is bit-identical
    assert tracked == plain


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_neither_counts_nor_refuses() -> None:
    # GIVEN a watch with a 1 MiB budget (as a DataLoader worker would inherit it)
    with memwatch(budget="1MiB", store=False) as mw:
        tensors = mw._budget.tensors
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # WHEN the child allocates far beyond the budget
            try:
                t = floats(4 * MiB)
                message = f"ok {tensors.live} {tensors.enabled} {t.numel()}"
            except BaseException as exc:
                message = f"error {exc!r}"
            os.write(write_fd, message.encode())
            os._exit(0)
        os.close(write_fd)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        reply = os.read(read_fd, 1000).decode()
        os.close(read_fd)
        # THEN it ran, counted nothing, and the parent's count is untouched
        assert reply == f"ok 0 False {MiB}"
        assert tensors.live == 0 and tensors.enabled


def test_cuda_style_sizes_match_the_allocator_format() -> None:
    # GIVEN / WHEN / THEN sizes print as c10's format_size does (<= 1 KiB in bytes, ...)
    assert cuda_style_size(1024) == "1024 bytes"
    assert cuda_style_size(1536) == "1.50 KiB"
    assert cuda_style_size(MiB) == "1024.00 KiB"
    assert cuda_style_size(20 * MiB) == "20.00 MiB"
    assert cuda_style_size(3 * 1024 * MiB) == "3.00 GiB"
    assert budget_oom_message(2 * MiB, 10 * MiB, 16 * MiB).startswith(
        "CUDA out of memory (memwatch budget). Tried to allocate 2.00 MiB. "
        "10.00 MiB already allocated; budget 16.00 MiB. "
        "This limit is memwatch's simulated budget (--budget), not the device running out of "
        "memory."
    )
