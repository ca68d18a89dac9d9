"""RAM fills up during training: three running losses summed as tensors in train and val.

Source: https://github.com/samuelyu2002/ImVisible/issues/2
Reported: memory ran out during training; the maintainer's fix was to change every
`running_loss += loss` (and the MSE and cross-entropy parts, in training and validation)
to `+= loss.item()`, because the computational graphs were being stored.
Shape: three locals summed inside a per-epoch helper function; the helper returns them.
"""

import torch
from torch import nn


class LightNet(nn.Module):
    """Predicts a direction (regression) and a light colour (classification)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(48, 96), nn.ReLU())
        self.direction = nn.Linear(96, 2)
        self.mode = nn.Linear(96, 3)

    def forward(self, x):
        h = self.trunk(x)
        return self.direction(h), self.mode(h)


def train_epoch(model, optimizer, batches):
    mse, ce = nn.MSELoss(), nn.CrossEntropyLoss()
    running_loss = running_loss_mse = running_loss_cross_entropy = 0.0
    for x, points, label in batches:
        pred_points, logits = model(x)
        MSE = mse(pred_points, points)
        cross_entropy = ce(logits, label)
        loss = MSE + cross_entropy
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        running_loss_mse += MSE.item()
        running_loss_cross_entropy += cross_entropy.item()
    n = len(batches)
    return running_loss / n, running_loss_mse / n, running_loss_cross_entropy / n


def main():
    torch.manual_seed(0)
    model = LightNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [
        (torch.randn(32, 48), torch.randn(32, 2), torch.randint(0, 3, (32,))) for _ in range(20)
    ]
    for epoch in range(2):
        total, part_mse, part_ce = train_epoch(model, optimizer, batches)
        print(
            f"epoch {epoch}: {float(total):.3f}",
            f"(mse {float(part_mse):.3f}, ce {float(part_ce):.3f})",
        )


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
