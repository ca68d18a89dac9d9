"""Fixed twin of cudnn_benchmark_dynamic_shapes.py: images padded to one size.

Padding every image to the largest size gives cuDNN a single shape to tune once, so
keeping `cudnn.benchmark = True` pays off (with truly free shapes, turn it off instead).

    memwatch run samples/bugs/cudnn_benchmark_dynamic_shapes_fixed.py --steps 24

Expected: no warning or error.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.nn import functional as F

MAX_SIZE = 48


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # fine: every batch has the same shape
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    sizes = torch.randint(16, 48, (args.steps,)).tolist()

    for size in sizes:
        images = torch.randn(args.batch, 3, size, size)
        images = F.pad(images, (0, MAX_SIZE - size, 0, MAX_SIZE - size))  # one shape
        labels = torch.randint(0, 10, (args.batch,))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
