"""`zero_grad(set_to_none=True)` at the top of each step, gradient clipping before the step.

Pattern: https://docs.pytorch.org/docs/stable/generated/torch.optim.Optimizer.zero_grad.html
Reported: the documented default (`set_to_none=True`) frees the gradients between steps;
`.grad` is None from the start of the step until backward, and clipping reads the gradients
between backward and step. Looks like "gradients reset"/"gradients missing" but is correct.
Shape: a `Trainer`-style helper class, `train_step()` method, grad-norm logging every 10 steps.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class StepRunner:
    def __init__(self) -> None:
        self.model = nn.Sequential(
            nn.Linear(48, 256), nn.LayerNorm(256), nn.GELU(), nn.Linear(256, 6)
        )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.01)
        self.grad_norms: list[float] = []

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=1.0)
        self.optimizer.step()
        self.grad_norms.append(norm.item())
        return loss.item()


def main() -> None:
    torch.manual_seed(0)
    runner = StepRunner()
    for step in range(40):
        x = torch.randn(64, 48)
        loss = runner.train_step(x, x[:, :6].argmax(dim=1))
        if step % 10 == 0:
            print(f"step {step}: loss {loss:.4f} grad norm {runner.grad_norms[-1]:.3f}")


if __name__ == "__main__":
    main()
