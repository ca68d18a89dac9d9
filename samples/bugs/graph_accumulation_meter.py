"""Bug: an AverageMeter is updated with the loss tensor, so its sum keeps every graph.

    memwatch run samples/bugs/graph_accumulation_meter.py

The classic ImageNet-example meter does `self.sum += val * n`. Given the loss *tensor*,
`meter.sum` becomes a tensor whose history holds the graph of every step. memwatch
reports `graph-accumulation` for `meter.sum` at `meter.update(loss, ...)`; the fixed twin
(`graph_accumulation_meter_fixed.py`) passes `loss.item()`.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class AverageMeter:
    """Computes and stores the average and current value."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.val: float | torch.Tensor = 0.0
        self.sum: float | torch.Tensor = 0.0
        self.count = 0
        self.avg: float | torch.Tensor = 0.0

    def update(self, val: float | torch.Tensor, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    meter = AverageMeter("loss")
    for _ in range(args.steps):
        x = torch.randn(args.batch, 20)
        target = torch.randint(0, 5, (args.batch,))
        loss = criterion(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        meter.update(loss, x.size(0))  # BUG: pass loss.item()
    print(f"{meter.name}: {meter.avg:.4f}")


if __name__ == "__main__":
    main()
