"""Continuous rising of GPU memory: epoch losses summed per key from the model's loss dict.

Source: https://github.com/jokester-zzz/SSA-SC/issues/2
Reported: GPU memory rose continuously during training and validation; the loop summed
`loss[key]` (tensors) into per-key running totals instead of `loss[key].item()`.
Shape: the model returns a dict of loss tensors; a dict of running sums, one per key.
"""

import torch
from torch import nn


class SegNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.head_1_1 = nn.Linear(64, 6)
        self.head_1_2 = nn.Linear(64, 6)

    def compute_loss(self, x, target):
        feats = self.body(x)
        ce = nn.functional.cross_entropy
        losses = {
            "semantic_1_1": ce(self.head_1_1(feats), target),
            "semantic_1_2": ce(self.head_1_2(feats), target),
        }
        losses["total"] = losses["semantic_1_1"] + 0.5 * losses["semantic_1_2"]
        return losses


def main():
    torch.manual_seed(0)
    model = SegNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    epoch_loss = {"total": 0.0, "semantic_1_1": 0.0, "semantic_1_2": 0.0}
    for _step in range(40):
        x = torch.randn(64, 32)
        target = torch.randint(0, 6, (64,))
        loss = model.compute_loss(x, target)
        optimizer.zero_grad()
        loss["total"].backward()
        optimizer.step()
        for key in loss:
            epoch_loss[key] += loss[key].item()
    print({k: round(float(v) / 40, 4) for k, v in epoch_loss.items()})


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
