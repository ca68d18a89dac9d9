"""OOM handling done right: leave the `except` block, then retry with half the batch.

Pattern: https://github.com/pytorch/pytorch/issues/27600
(albanD: the exception holds the frame and all its tensors while it is referenced)
Reported: catching the OOM only to set a flag lets the exception and its traceback die at
the end of the `except` block; the retry then runs with the failed attempt's tensors freed.
Shape: a `train_step()` helper; a `while` loop halving the micro-batch after each OOM; the
OOM is raised by a capacity check (no GPU here), as the allocator would.
"""

import torch
from torch import nn

ZOO = {"expect": None}

CAPACITY = 24 * 2**20


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    h = torch.relu(model[0](x))
    if h.numel() * h.element_size() * 4 > CAPACITY:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 32.00 MiB")
    loss = nn.functional.mse_loss(model[2](h), y)
    loss.backward()
    return loss.item()


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 2048), nn.ReLU(), nn.Linear(2048, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    micro = 1024
    for step in range(30):
        x, y = torch.randn(1024, 128), torch.randn(1024, 1)
        optimizer.zero_grad()
        done = False
        while not done:
            failed = False
            try:
                for start in range(0, len(x), micro):
                    train_step(model, x[start : start + micro], y[start : start + micro])
                done = True
            except torch.OutOfMemoryError:
                failed = True
            if failed:
                optimizer.zero_grad()
                micro //= 2
                print(f"step {step}: OOM, micro-batch now {micro}")
        optimizer.step()


if __name__ == "__main__":
    main()
