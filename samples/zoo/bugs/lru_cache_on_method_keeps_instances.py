"""`functools.cache` on a method keeps every instance (and its tensors) alive.

Source: https://github.com/pytorch/pytorch/pull/149354
(also https://github.com/meta-pytorch/botorch/pull/1650)
Reported: `@functools.cache` on a method keeps `self` in the cache, so a model that was
deleted still occupied its memory (pytorch/pytorch#149100); botorch removed `lru_cache` from
methods for the same leak.
Shape: a per-batch helper object (`BatchFeatures`) whose cached method returns a tensor;
the class-level cache keys on `self`, so every batch's helper and its tensors stay alive.
"""

import functools

import torch
from torch import nn

ZOO = {
    "expect": "memory-growth",
    "culprit": "BatchFeatures",
    "line": "@functools.cache",
    "frameworks": [],
}


class BatchFeatures:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    @functools.cache  # noqa: B019  # BUG: the cache keys on `self`; every instance stays alive
    def gram(self) -> torch.Tensor:
        return self.x @ self.x.T

    def normalized(self) -> torch.Tensor:
        g = self.gram()
        return g / g.diagonal().sqrt().outer(g.diagonal().sqrt())


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(40):
        x = torch.randn(256, 256)
        feats = BatchFeatures(x)
        target = feats.normalized().mean(dim=1, keepdim=True)
        loss = nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print("cached:", BatchFeatures.gram.cache_info())


if __name__ == "__main__":
    main()
