"""Fixed twin of unbatched_forward.py: one call on the whole batch.

    memwatch run samples/bugs/unbatched_forward_fixed.py --steps 10

Expected: no warning or error.
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
        loss = loss_fn(model(xb), yb)  # the whole batch in one call
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
