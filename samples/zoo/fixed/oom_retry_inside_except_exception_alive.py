"""Free memory after CUDA out of memory error: retrying inside `except` frees nothing.

Source: https://github.com/pytorch/pytorch/issues/27600
Reported: after catching an OOM, `gc.collect()`/`empty_cache()` did not free the memory and
the retry ran out again; albanD explained the exception holds the frame where the error was
raised, which holds all its tensors, for as long as the exception is referenced.
Shape: a helper `forward_backward()` raises from deep inside; the caller retries with half the
batch inside the `except ... as e` block, so `e` (and its traceback frames) are alive.
The OOM is raised by a capacity check (no GPU here), as the allocator would.
"""

import torch
from torch import nn

ZOO = {"expect": None}

CAPACITY = 16 * 2**20  # bytes of activations the "device" can hold


def forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    h = model[0](x)
    a = torch.relu(h)
    if h.numel() * h.element_size() * 6 > CAPACITY:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 MiB")
    loss = nn.functional.mse_loss(model[2](a), y)
    loss.backward()
    return loss.item()


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 2048), nn.ReLU(), nn.Linear(2048, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    for step in range(30):
        n = 512 if step % 10 == 0 else 256
        x, y = torch.randn(n, 256), torch.randn(n, 1)
        optimizer.zero_grad()
        oom = False
        try:
            loss = forward_backward(model, x, y)
        except torch.OutOfMemoryError as e:
            print(f"step {step}: {e}; retrying with half the batch")
            oom = True  # FIX: leave the except block first, so `e` and its frames are freed
        if oom:
            torch.cuda.empty_cache()
            loss = forward_backward(model, x[: len(x) // 2], y[: len(y) // 2])
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step}: loss {loss:.4f}")


if __name__ == "__main__":
    main()
