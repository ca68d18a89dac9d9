"""Bug: the model is called once per sample, on the rows of a batch that already exists.

Each call runs every layer on a single vector, and autograd builds one small graph per
sample: the step is many times slower and keeps per-sample graphs until the backward.

    memwatch run samples/bugs/unbatched_forward.py --steps 10

Expected: unbatched-forward (warning) at the line calling `model(x)` per row, variable
`model`. The fixed twin is unbatched_forward_fixed.py.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    for _ in range(args.steps):
        xb, yb = torch.randn(args.batch, 64), torch.randint(0, 10, (args.batch,))
        optimizer.zero_grad(set_to_none=True)
        # BUG: the model runs once per sample, on the rows of a batch that already exists
        loss = torch.stack([loss_fn(model(x), y) for x, y in zip(xb, yb)]).mean()
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
