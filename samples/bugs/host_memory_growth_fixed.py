"""Fixed twin of host_memory_growth.py: samples are decoded on demand, not cached.

(A bounded cache, e.g. `functools.lru_cache(maxsize=...)`, would do too.)

    memwatch run samples/bugs/host_memory_growth_fixed.py --steps 40

Expected: no warning or error.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn


class ImageDataset:
    """Decodes (here: generates) a 3x32x32 image per index."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        rng = np.random.default_rng(index)
        return rng.standard_normal((3, 32, 32), dtype=np.float32), index % 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dataset = ImageDataset(args.steps * args.batch)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    for step in range(args.steps):
        items = [dataset[i] for i in range(step * args.batch, (step + 1) * args.batch)]
        x = torch.from_numpy(np.stack([image for image, _ in items]))
        y = torch.tensor([label for _, label in items])
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
