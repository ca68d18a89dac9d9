"""Bug: last step's big reconstruction is still alive while the next forward runs.

    memwatch run samples/bugs/lingering_step_locals.py

An autoencoder's output is as big as its input. In this loop `recon` (and `loss`) still
hold step N's tensors when step N+1's `model(x)` starts, so the old reconstruction sits
in memory next to the new activations and the peak is higher by its size. memwatch
reports `lingering-step-locals`; the fixed twin (`lingering_step_locals_fixed.py`) runs
the step in a function, whose locals are freed when it returns.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


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
    for _ in range(args.steps):
        x = torch.randn(args.batch, args.features)
        recon = model(x)  # 2 MiB that outlives the step
        loss = nn.functional.mse_loss(recon, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"reconstruction loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
