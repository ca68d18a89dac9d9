"""Bug: every step's loss tensor is appended to a list, keeping every step's graph.

    memwatch run samples/bugs/graph_accumulation_append.py

`losses.append(loss)` keeps the loss *tensor*, and with it the autograd graph of its step
(nodes, and on a GPU the small tensors they reference): one more graph per step, never
freed. memwatch reports `graph-accumulation` on the append; the fixed twin
(`graph_accumulation_append_fixed.py`) appends `loss.item()`.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def train(steps: int, batch: int) -> list[float]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        x = torch.randn(batch, 32)
        y = x.sum(dim=1, keepdim=True)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss)  # BUG: the tensor keeps its graph; append loss.item()
    return [v.item() for v in losses]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    history = train(args.steps, args.batch)
    print(f"first loss {history[0]:.3f}, last loss {history[-1]:.3f}")


if __name__ == "__main__":
    main()
