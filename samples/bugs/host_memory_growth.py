"""Bug: the Dataset caches every decoded sample, so host memory grows step after step.

`__getitem__` keeps each decoded image in a dict "to speed up the next epoch", but the
run never sees an index twice before the cache holds the whole dataset: the process's
resident memory (RSS) climbs by the size of a batch every step.

    memwatch run samples/bugs/host_memory_growth.py --steps 40

Expected: memory-growth (warning) on `dataset.cache` at the line that stores into it: the
census counts the numpy arrays as host bytes (before it, only a location-less
host-memory-growth from RSS).
The fixed twin is host_memory_growth_fixed.py.
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
        self.cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if index not in self.cache:
            rng = np.random.default_rng(index)
            self.cache[index] = rng.standard_normal((3, 32, 32), dtype=np.float32)  # BUG
        return self.cache[index], index % 10


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
    print(f"final loss {loss.item():.4f}, cached samples {len(dataset.cache)}")


if __name__ == "__main__":
    main()
