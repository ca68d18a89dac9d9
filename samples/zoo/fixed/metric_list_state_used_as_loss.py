"""Memory leak when using Metric with list state (a differentiable dice used as a metric).

Source: https://github.com/Lightning-AI/pytorch-lightning/issues/4098
Reported: a differentiable dice coefficient written as a `Metric` (list state, called in
every training step, its value used as the loss) made memory grow all epoch: the metric
caches every batch's value in its state, and since the value is not detached each cached
entry keeps that step's whole autograd graph until the state is reset at epoch end.
Shape: a torchmetrics-like helper class (`update`/`compute`/`reset`, list state
`self.scores`) held as an attribute of the model wrapper; reset only at epoch end.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class DifferentiableDice:
    """A metric with a list state, the way torchmetrics metrics keep per-batch values."""

    def __init__(self) -> None:
        self.scores: list[torch.Tensor] = []

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        inter = (probs * target).sum()
        dice = (2 * inter + 1.0) / (probs.sum() + target.sum() + 1.0)
        self.scores.append(dice.detach())
        return dice

    def compute(self) -> float:
        return float(torch.stack(self.scores).mean())

    def reset(self) -> None:
        self.scores = []


class Segmenter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1))
        self._dice = DifferentiableDice()

    def training_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(self.net(x))
        dice = self._dice.update(probs, y)
        return 1 - dice


def main() -> None:
    torch.manual_seed(0)
    model = Segmenter()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1):
        for _ in range(60):
            x = torch.randn(8, 1, 24, 24)
            y = (x > 0.5).float()
            loss = model.training_step(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: dice {model._dice.compute():.3f}")
        model._dice.reset()


if __name__ == "__main__":
    main()
