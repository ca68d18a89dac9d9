"""accelerate: `zero_grad()` first inside `accelerator.accumulate()` discards accumulated gradients.

Source: https://github.com/huggingface/accelerate/issues/1299
(fixed the same way in https://github.com/modelscope/DiffSynth-Studio/pull/1404)
Reported: with gradient accumulation, calling `optimizer.zero_grad()` at the beginning of
the iteration (as a docs page showed) discards the previously accumulated gradients: on the
step where accelerate syncs, the wrapped optimizer really zeroes, so the update uses only the
last micro-batch's gradient. Loss still goes down, so it goes unnoticed.
Shape: `with accelerator.accumulate(model):` body with zero_grad first, as in the reports.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {
    "expect": "grad-reset-before-step",
    "culprit": "optimizer",
    "line": "optimizer.zero_grad()",
    "frameworks": ["accelerate"],
}


def main() -> None:
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=4)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(2048, 32)
    data = TensorDataset(x, x.sum(dim=1, keepdim=True))
    model, optimizer, loader = accelerator.prepare(
        model, optimizer, DataLoader(data, batch_size=16)
    )
    for i, (xb, yb) in enumerate(loader):
        with accelerator.accumulate(model):
            optimizer.zero_grad()  # BUG: on the sync step this wipes 3 accumulated micro-batches
            loss = nn.functional.mse_loss(model(xb), yb)
            accelerator.backward(loss)
            optimizer.step()
        if i % 32 == 0:
            accelerator.print(f"micro-step {i}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
