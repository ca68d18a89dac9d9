"""A training loop whose activations live on the fake GPU (the model itself is on CPU)."""

from __future__ import annotations

import torch
from torch import nn

from tests.fakecuda import FakeCuda

MiB = 1024 * 1024


class Loop:
    """One optimizer step per call: ``activation_bytes`` on the GPU during forward and
    backward, freed before ``optimizer.step()`` (where memwatch's step ends)."""

    def __init__(self, fake: FakeCuda) -> None:
        self.fake = fake
        self.model = nn.Linear(4, 4)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

    def step(self, activation_bytes: int, device: int | None = None) -> None:
        activations = self.fake.alloc(activation_bytes, device)
        loss = self.model(torch.randn(2, 4)).sum()
        loss.backward()
        self.fake.free(activations)
        self.optimizer.step()
        self.optimizer.zero_grad()
