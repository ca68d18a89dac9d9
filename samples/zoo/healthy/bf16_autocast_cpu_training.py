"""Mixed precision on CPU: forward under torch.autocast("cpu", dtype=torch.bfloat16).

Pattern: https://pytorch.org/docs/stable/amp
Looks risky: autocast keeps a cache of casted weights during the region and the forward
runs in a second dtype; nothing of it outlives the step.
Shape: a small convnet, forward and loss under autocast, backward outside it.
"""

import torch
from torch import nn


def main():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(256, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    running = 0.0
    for step in range(1, 41):
        x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += loss.item()
        if step % 10 == 0:
            print(step, f"{running / 10:.3f}")
            running = 0.0


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
