"""Fixed twin of microbatch_graph_accumulation.py: one backward per micro-batch.

Gradients add up in `.grad`, so `(loss / n).backward()` inside the loop gives the same
update while only one micro-batch's graph is alive at a time.

    memwatch run samples/bugs/microbatch_graph_accumulation_fixed.py --steps 20

Expected: no warning or error.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--micro", type=int, default=4)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    for _ in range(args.steps):
        x, y = torch.randn(args.batch, 128), torch.randint(0, 10, (args.batch,))
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for xm, ym in zip(x.chunk(args.micro), y.chunk(args.micro)):
            loss = loss_fn(model(xm), ym) / args.micro
            loss.backward()  # frees this micro-batch's graph at once
            total += loss.item()
        optimizer.step()
    print(f"final loss {total:.4f}")


if __name__ == "__main__":
    main()
