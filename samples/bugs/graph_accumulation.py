"""Bug: the running loss is accumulated as a tensor, keeping every step's autograd graph.

    memwatch run samples/bugs/graph_accumulation.py

`running_loss += loss` adds the loss *tensor*: `running_loss` becomes a tensor whose
history holds the graph of every step so far, so memory grows by a little at each step
for as long as training runs. memwatch reports `graph-accumulation` on that line; the
fixed twin (`graph_accumulation_fixed.py`) accumulates `loss.item()`.
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
        running_loss += loss  # BUG: keeps the graph; use loss.item()
    print(f"mean loss {running_loss / args.steps:.4f}")


if __name__ == "__main__":
    main()
