"""train.py: `zero_grad` is called per micro-batch, breaking gradient accumulation.

Source: https://github.com/bytetriper/RAE/issues/67
Reported: `optimizer.zero_grad(set_to_none=True)` sat inside the inner micro-batch loop, so
the gradients were cleared every micro-batch instead of being accumulated, and each update
used only the last micro-batch.
Shape: an inner `for micro in range(accum_steps)` loop inside a `train_one_epoch()` helper;
the step happens after the inner loop.
"""

import torch
from torch import nn

ZOO = {"expect": None}


def train_one_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, data: torch.Tensor, accum_steps: int
) -> float:
    micro_bs = 16
    last = 0.0
    for start in range(0, data.size(0), micro_bs * accum_steps):
        chunk = data[start : start + micro_bs * accum_steps]
        optimizer.zero_grad(set_to_none=True)  # FIX: once per optimizer step
        for micro in range(accum_steps):
            xb = chunk[micro * micro_bs : (micro + 1) * micro_bs]
            loss = nn.functional.mse_loss(model(xb), xb.sum(dim=1, keepdim=True)) / accum_steps
            loss.backward()
            last = loss.item()
        optimizer.step()
    return last


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.randn(1024, 32)
    for epoch in range(3):
        print(f"epoch {epoch}: loss {train_one_epoch(model, optimizer, data, accum_steps=4):.4f}")


if __name__ == "__main__":
    main()
