"""k-fold cross-validation rebuilding the model and its optimizer in every fold.

Pattern: https://github.com/IoBT-VISTEC/MIN2Net/issues/1
(the fix: "the optimizer must be assigned in each and every fold")
Reported: a new model per fold is fine as long as the optimizer is built on it; the previous
fold's model and optimizer become garbage together. Looks like "model replaced while
training" but nothing is stale.
Shape: `make_fold()` returns (model, optimizer); results in a dict per fold.
"""

import torch
from torch import nn

ZOO = {"expect": None}


def make_fold() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 4))
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(320, 32)
    y = x[:, :4].argmax(dim=1)
    folds = torch.arange(320).chunk(4)
    scores = {}
    for k, val_idx in enumerate(folds):
        model, optimizer = make_fold()
        train_idx = torch.cat([f for j, f in enumerate(folds) if j != k])
        for _ in range(2):
            for batch in train_idx.split(32):
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            scores[k] = (model(x[val_idx]).argmax(1) == y[val_idx]).float().mean().item()
    print(scores)


if __name__ == "__main__":
    main()
