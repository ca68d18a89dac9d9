"""The fake stands in below torch's Python layer: torch's own functions run on it."""

from __future__ import annotations

import pytest
import torch

from tests.fakecuda import FakeCuda

MiB = 1024 * 1024


def test_torch_sees_the_fake_through_its_own_python_layer(fake_cuda: FakeCuda) -> None:
    # GIVEN the fake, CUDA not initialised
    assert torch.cuda.is_available() and not torch.cuda.is_initialized()
    # WHEN the program selects GPU 1 and allocates there
    torch.cuda.set_device(1)
    block = fake_cuda.alloc(3 * MiB)
    # THEN torch's own functions read the allocator model
    assert torch.cuda.is_initialized() and fake_cuda.inits == 1
    assert torch.cuda.current_device() == 1
    assert torch.cuda.memory_allocated() == 3 * MiB
    assert torch.cuda.memory_reserved() == 20 * MiB  # a 1-10 MiB request takes 20 MiB
    fake_cuda.free(block)
    assert torch.cuda.max_memory_allocated() == 3 * MiB
    torch.cuda.reset_peak_memory_stats()
    assert torch.cuda.max_memory_allocated() == 0
    assert torch.cuda.get_device_properties(1).total_memory == 80 * 1024**3
    torch.cuda.empty_cache()
    assert torch.cuda.memory_reserved() == 0


def test_an_oom_calls_observers_with_the_limit_and_raises_the_allocators_message(
    fake_cuda: FakeCuda,
) -> None:
    # GIVEN a 1 GiB limit and an observer
    seen: list[tuple[int, int, int, int]] = []
    torch._C._cuda_attach_out_of_memory_observer(lambda *args: seen.append(args))
    torch.cuda.set_per_process_memory_fraction(1 / 80, 0)
    # WHEN 2 GiB are asked
    with pytest.raises(torch.OutOfMemoryError) as raised:
        fake_cuda.alloc(2 * 1024**3)
    # THEN the observer got (device, size, allowed maximum, free) before the raise
    assert seen and seen[0][:3] == (0, 2 * 1024**3, 1024**3)
    assert str(raised.value).startswith(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        "80.00 GiB of which "
    )
    assert "1024.00 MiB allowed; Of the allocated memory 0 bytes is allocated" in str(raised.value)
