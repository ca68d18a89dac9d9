"""The parameters are not updated when the pruned model is fine-tuned.

Source: https://github.com/microsoft/nni/issues/4521
Reported: after pruning, `ModelSpeedup(...).speedup_model()` replaced the layers of the
original model with smaller ones (copying the kept weights), but fine-tuning reused the
optimizer built before: "the parameters registered in the optimizer are outdated";
re-creating the optimizer fixed it. The old layers' parameters, gradients-free, and their
Adam state stay pinned by the optimizer while the new layers never train.
Shape: the model object is kept; its submodules are swapped in place with `setattr` by a
speed-up helper (no `model = ...` rebinding); the optimizer was built before.
"""

import torch
from torch import nn

ZOO = {
    "expect": "stale-optimizer-params",
    "culprit": "optimizer",
    "frameworks": [],
}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def speedup_model(model: Net, masks: dict[str, torch.Tensor]) -> None:
    """Replace masked layers by smaller ones, keeping the unmasked weights (in place)."""
    keep = masks["fc1"].nonzero().squeeze(1)
    fc1 = nn.Linear(64, len(keep))
    fc2 = nn.Linear(len(keep), 10)
    with torch.no_grad():
        fc1.weight.copy_(model.fc1.weight[keep])
        fc1.bias.copy_(model.fc1.bias[keep])
        fc2.weight.copy_(model.fc2.weight[:, keep])
        fc2.bias.copy_(model.fc2.bias)
    for name, layer in (("fc1", fc1), ("fc2", fc2)):
        setattr(model, name, layer)


def train(model, optimizer, steps: int) -> float:
    for _ in range(steps):
        x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def main() -> None:
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    print(f"pre-train loss {train(model, optimizer, 20):.4f}")
    masks = {"fc1": (model.fc1.weight.abs().sum(1) > model.fc1.weight.abs().sum(1).median())}
    speedup_model(model, masks)
    # BUG: the optimizer still holds the replaced layers' parameters
    print(f"fine-tune loss {train(model, optimizer, 40):.4f}")


if __name__ == "__main__":
    main()
