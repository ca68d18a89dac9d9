"""Fixed twin of lingering_step_locals.py: the step body is a function.

    memwatch run samples/bugs/lingering_step_locals_fixed.py

`train_step` returns a Python float; its locals (`recon`, `loss`) die when it returns,
so nothing of step N is alive when step N+1's forward starts.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> float:
    recon = model(x)
    loss = nn.functional.mse_loss(recon, x)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--features", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    model = nn.Sequential(nn.Linear(args.features, 64), nn.ReLU(), nn.Linear(64, args.features))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = float("nan")
    for _ in range(args.steps):
        x = torch.randn(args.batch, args.features)
        loss = train_step(model, optimizer, x)
    print(f"reconstruction loss {loss:.4f}")


if __name__ == "__main__":
    main()
