"""Gradient accumulation done right: scaled loss per micro-batch, step and zero_grad every k.

Pattern: https://huggingface.co/docs/accelerate/usage_guides/gradient_accumulation
(the plain PyTorch loop it starts from)
Reported: `loss / k` backpropagated per micro-batch, `optimizer.step()` and
`optimizer.zero_grad()` only when `(index + 1) % k == 0`: several backwards between steps
and gradients alive across micro-batches are the point, not a bug.
Shape: flat loop over a DataLoader with an every-k-steps update; a scheduler.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {"expect": None}


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(2048, 32)
    loader = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=32)
    gradient_accumulation_steps = 4
    for index, (inputs, targets) in enumerate(loader):
        loss = nn.functional.mse_loss(model(inputs), targets)
        loss = loss / gradient_accumulation_steps
        loss.backward()
        if (index + 1) % gradient_accumulation_steps == 0:
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if index % 32 == 0:
            print(f"micro-step {index}: loss {loss.item() * gradient_accumulation_steps:.4f}")


if __name__ == "__main__":
    main()
