"""A torchmetrics-style metric with list state, fed detached predictions in every step.

Pattern: https://lightning.ai/docs/torchmetrics/stable/pages/implement.html
Reported: a Metric keeps per-batch state between `update()` and `compute()`; torchmetrics
updates its states without autograd and the states hold detached tensors, so the state
grows by a few numbers per batch and is reset each epoch. Looks risky (tensors appended
to a list on an object every training step, reset only at epoch end) but holds no graph.
Shape: a helper class with `update`/`compute`/`reset` and list states `self.preds` /
`self.target`, attribute of the training wrapper; the loss is a separate tensor.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class MeanAbsoluteError:
    def __init__(self) -> None:
        self.reset()

    @torch.no_grad()
    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.sum_abs_error.append((preds.detach() - target).abs().sum())
        self.total.append(torch.tensor(target.numel()))

    def compute(self) -> float:
        return float(torch.stack(self.sum_abs_error).sum() / torch.stack(self.total).sum())

    def reset(self) -> None:
        self.sum_abs_error: list[torch.Tensor] = []
        self.total: list[torch.Tensor] = []


class Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
        self.train_mae = MeanAbsoluteError()

    def training_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        preds = self.net(x)
        self.train_mae.update(preds, y)
        return nn.functional.mse_loss(preds, y)


def main() -> None:
    torch.manual_seed(0)
    model = Regressor()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(3):
        for _ in range(20):
            x = torch.randn(64, 32)
            y = x[:, :1] * 2
            loss = model.training_step(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: mae {model.train_mae.compute():.4f}")
        model.train_mae.reset()


if __name__ == "__main__":
    main()
