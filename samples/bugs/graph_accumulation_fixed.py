"""Fixed twin of graph_accumulation.py: the running loss is accumulated as a number.

    memwatch run samples/bugs/graph_accumulation_fixed.py

`running_loss += loss.item()` adds a Python float, so no tensor outlives its step and
each step's graph is freed when `loss` is rebound. memwatch reports nothing here.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    x_all = torch.randn(args.steps * args.batch, 64)
    y_all = torch.randint(0, 10, (args.steps * args.batch,))

    running_loss = 0.0
    for step in range(args.steps):
        x = x_all[step * args.batch : (step + 1) * args.batch]
        y = y_all[step * args.batch : (step + 1) * args.batch]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()  # a Python float: no graph kept
    print(f"mean loss {running_loss / args.steps:.4f}")


if __name__ == "__main__":
    main()
