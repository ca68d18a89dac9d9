"""Bug: a trainer's `train_step` never zeroes the gradients between optimizer steps.

`backward()` adds into `.grad`, so every update follows the sum of all earlier steps'
gradients (clipped, here, which hides the growing norm): training runs, the loss is
worse than it should be, and nothing errors.

    memwatch run samples/bugs/grad_never_reset.py --steps 20

Expected: grad-never-reset (warning) at the `self.optimizer.step()` line, variable
`self.optimizer`. The fixed twin is grad_never_reset_fixed.py.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class Trainer:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        loss = nn.functional.mse_loss(self.model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()  # BUG: nothing resets the gradients before the next backward
        return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    trainer = Trainer(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)))
    for step in range(args.steps):
        x = torch.randn(args.batch, 32)
        loss = trainer.train_step(x, x.sum(dim=1, keepdim=True))
        if step % 5 == 0:
            print(f"step {step}: loss {loss:.4f}")


if __name__ == "__main__":
    main()
