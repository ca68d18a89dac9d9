"""Bug: evaluation under `torch.no_grad()` but without `model.eval()`.

Dropout keeps dropping activations and BatchNorm normalises with each validation batch's
statistics (and overwrites its running averages), so the accuracy is noisy and the
model changes while it is being measured.

    memwatch run samples/bugs/eval_mode_missing.py --steps 30

Expected: eval-mode-missing (warning) at the `model(x_val[...])` line, variable `model`.
The fixed twin is eval_mode_missing_fixed.py.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def evaluate(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor, batch: int) -> float:
    correct = 0
    with torch.no_grad():  # BUG: model.eval() is missing, dropout and batch norm train
        for i in range(0, len(x_val), batch):
            logits = model(x_val[i : i + batch])
            correct += int((logits.argmax(1) == y_val[i : i + batch]).sum())
    return correct / len(x_val)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=10)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(128, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x_val, y_val = torch.randn(8 * args.batch, 128), torch.randint(0, 10, (8 * args.batch,))

    model.train()
    for step in range(args.steps):
        x, y = torch.randn(args.batch, 128), torch.randint(0, 10, (args.batch,))
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
        if (step + 1) % args.eval_every == 0:
            print(f"step {step + 1}: val accuracy {evaluate(model, x_val, y_val, args.batch):.3f}")


if __name__ == "__main__":
    main()
