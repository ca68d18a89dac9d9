"""accelerate gradient accumulation written as the guide does it, with periodic evaluation.

Pattern: https://huggingface.co/docs/accelerate/usage_guides/gradient_accumulation
Reported: `with accelerator.accumulate(model):` skips the real `step()`/`zero_grad()` on the
accumulating micro-batches; `optimizer.zero_grad()` after `optimizer.step()` is correct, and
`gather_for_metrics` of detached predictions under no_grad keeps nothing.
Shape: accelerate loop, accumulation 4, evaluation every 32 micro-batches.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {"expect": None, "frameworks": ["accelerate"]}


def evaluate(accelerator: Accelerator, model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for xb, yb in loader:
            preds = model(xb).argmax(dim=1)
            preds, refs = accelerator.gather_for_metrics((preds, yb))
            correct += (preds == refs).sum().item()
            total += refs.numel()
    model.train()
    return correct / total


def main() -> None:
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=4)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2560, 32)
    y = x[:, :4].argmax(dim=1)
    train = DataLoader(TensorDataset(x[:2048], y[:2048]), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(x[2048:], y[2048:]), batch_size=128)
    model, optimizer, train, val = accelerator.prepare(model, optimizer, train, val)
    for i, (xb, yb) in enumerate(train):
        with accelerator.accumulate(model):
            loss = nn.functional.cross_entropy(model(xb), yb)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        if (i + 1) % 32 == 0:
            accelerator.print(
                f"micro-step {i + 1}: val acc {evaluate(accelerator, model, val):.3f}"
            )


if __name__ == "__main__":
    main()
