"""Saving the weights of every epoch fills the memory for large networks.

Source: https://github.com/citoverse/cito/issues/45
Reported: (cito, an R package on torch) with large networks the RAM filled up because the
weights were stored at every epoch; the fix keeps only the last and the best epoch. Written
in Python as people do it: a deep copy of `model.state_dict()` appended per epoch.
Shape: `history` list of dicts {"epoch", "weights": deepcopy(state_dict)} appended at every
epoch end (every 8 steps); only the best is ever used.
"""

import copy

import torch
from torch import nn

ZOO = {"expect": None}


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 1)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(512, 64), torch.randn(512, 1)
    history = []
    best_weights, best_val = None, float("inf")
    for epoch in range(8):
        for batch in torch.arange(512).split(64):
            loss = nn.functional.mse_loss(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val = nn.functional.mse_loss(model(x), y).item()
        history.append({"epoch": epoch, "val": val})
        if val < best_val:  # FIX: keep one copy, the best
            best_val, best_weights = val, copy.deepcopy(model.state_dict())
    best = min(history, key=lambda h: h["val"])
    model.load_state_dict(best_weights)
    print(f"best epoch {best['epoch']}: {best['val']:.4f}")


if __name__ == "__main__":
    main()
