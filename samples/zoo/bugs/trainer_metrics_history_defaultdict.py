"""Trainer leaks autograd graph memory: metrics stored without detaching.

Source: https://github.com/pnnl/neuromancer/pull/292
Reported: the Trainer stored the metrics of every step without detaching them from the
autograd graph, "storing hundreds of MB or a few GB of autograd graph on accident per long
training run"; the fix detaches the metrics before storing them.
Shape: a Trainer class keeps `self.history = defaultdict(list)` of per-step metric tensors
(the loss and its terms from a problem object's output dict), read at the end for curves.
"""

from collections import defaultdict

import torch
from torch import nn

ZOO = {
    "expect": "graph-accumulation",
    "also_ok": ["memory-growth"],
    "culprit": "history",
    "line": "self.history[key].append(value)",
    "frameworks": [],
}


class Problem(nn.Module):
    """A model plus its objectives: returns a dict with the loss and its terms."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 4))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        u = self.policy(batch["x"])
        tracking = ((u - batch["ref"]) ** 2).mean()
        effort = (u**2).mean()
        return {"train_loss": tracking + 0.1 * effort, "tracking": tracking, "effort": effort}


class Trainer:
    def __init__(self, problem: Problem, optimizer: torch.optim.Optimizer, epochs: int) -> None:
        self.problem = problem
        self.optimizer = optimizer
        self.epochs = epochs
        self.history: defaultdict[str, list] = defaultdict(list)

    def train(self) -> None:
        for epoch in range(self.epochs):
            for _ in range(10):
                batch = {"x": torch.randn(32, 16), "ref": torch.randn(32, 4)}
                output = self.problem(batch)
                self.optimizer.zero_grad()
                output["train_loss"].backward()
                self.optimizer.step()
                for key, value in output.items():
                    self.history[key].append(value)  # BUG: not detached
            print(f"epoch {epoch}: train_loss {float(self.history['train_loss'][-1]):.4f}")


def main() -> None:
    torch.manual_seed(0)
    problem = Problem()
    Trainer(problem, torch.optim.AdamW(problem.parameters(), lr=1e-3), epochs=6).train()


if __name__ == "__main__":
    main()
