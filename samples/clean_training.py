"""A healthy training loop: a small MLP on synthetic data, the way it should be written.

    memwatch run samples/clean_training.py --steps 30

memwatch should report no problems here (it is the fixed twin of several buggy samples).
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def make_data(n: int, features: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x_all, y_all = make_data(args.steps * args.batch, 128, 10)

    running_loss = 0.0
    model.train()
    for step in range(args.steps):
        x = x_all[step * args.batch : (step + 1) * args.batch]
        y = y_all[step * args.batch : (step + 1) * args.batch]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()  # a float: no graph kept alive
    model.eval()
    with torch.no_grad():
        val_loss = loss_fn(model(x_all[: args.batch]), y_all[: args.batch]).item()
    print(f"mean train loss {running_loss / args.steps:.4f}, val loss {val_loss:.4f}")


if __name__ == "__main__":
    main()
