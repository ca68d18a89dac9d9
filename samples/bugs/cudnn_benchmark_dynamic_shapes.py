"""Bug: `torch.backends.cudnn.benchmark = True` with images of a new size every step.

With benchmark on, cuDNN times every convolution algorithm again for each new input
shape; with free-size images that is nearly every step (slow steps, extra workspace
memory). The flag and the shapes are visible on a CPU run too.

    memwatch run samples/bugs/cudnn_benchmark_dynamic_shapes.py --steps 24

Expected: cudnn-benchmark-dynamic-shapes (warning) at the `model(images)` line, variable
`model`. The fixed twin is cudnn_benchmark_dynamic_shapes_fixed.py.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True  # BUG: input sizes change every step
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
        labels = torch.randint(0, 10, (args.batch,))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
