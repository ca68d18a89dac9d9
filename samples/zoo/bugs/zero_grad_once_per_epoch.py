"""`zero_grad()` called at the beginning of each epoch instead of each iteration.

Source: https://github.com/pytorch/pytorch/issues/47175
Reported: a feature request describing "an extremely nasty bug": forgetting `zero_grad()`
or calling it at the beginning of each epoch instead of each iteration, so gradients add up
over the whole epoch and the model silently trains badly.
Shape: epoch loop with `model.zero_grad()` before the batch loop; batches from a DataLoader.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {
    "expect": "grad-never-reset",
    "culprit": "zero_grad",
    "line": "model.zero_grad()",
    "frameworks": [],
}


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(1280, 20)
    data = TensorDataset(x, (x[:, :5].sum(dim=1) > 0).long())
    loader = DataLoader(data, batch_size=64, shuffle=True)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for epoch in range(3):
        model.zero_grad()  # BUG: once per epoch; gradients pile up over the epoch's 20 steps
        correct = 0
        for xb, yb in loader:
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb)
            loss.backward()
            optimizer.step()
            correct += (logits.argmax(1) == yb).sum().item()
        print(f"epoch {epoch}: train acc {correct / len(data):.3f}")


if __name__ == "__main__":
    main()
