"""k-fold cross-validation: from the second fold on the model does not train (optimizer built once).

Source: https://github.com/IoBT-VISTEC/MIN2Net/issues/1
Reported: (a Keras report of the same mechanism) the second fold re-used the optimizer
object created for the first model, so the new model's training went wrong; the fix is to
create the optimizer inside every fold. In PyTorch the optimizer keeps stepping the first
fold's parameters (and pinning them with their Adam state) while each new model never moves.
Shape: helper `build_model()` called per fold; the optimizer is built once, before the folds,
in a config dict.
"""

import torch
from torch import nn

ZOO = {"expect": None}


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 4))


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(320, 32)
    y = torch.randint(0, 4, (320,))
    folds = torch.arange(320).chunk(4)
    model = build_model()
    config = {"optimizer": torch.optim.Adam(model.parameters(), lr=1e-3), "epochs": 2}
    for k, val_idx in enumerate(folds):
        model = build_model()
        # FIX: a fresh optimizer per fold
        config["optimizer"] = torch.optim.Adam(model.parameters(), lr=1e-3)
        optimizer = config["optimizer"]
        train_idx = torch.cat([f for j, f in enumerate(folds) if j != k])
        for _ in range(config["epochs"]):
            for batch in train_idx.split(32):
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            acc = (model(x[val_idx]).argmax(1) == y[val_idx]).float().mean().item()
        print(f"fold {k}: val acc {acc:.3f}")


if __name__ == "__main__":
    main()
