"""Fixed twin of retain_graph_leak.py: the carried context is detached each step.

Detaching `context` at the start of each batch cuts the history at the step boundary,
so backward no longer needs the previous graphs and `retain_graph=True` can go: each
graph is freed by its own backward.

    memwatch run samples/bugs/retain_graph_leak_fixed.py --steps 30

Expected: no warning or error.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class ContextModel(nn.Module):
    """Mixes each batch's features into a running context that is passed back in."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(64, 1024), nn.ReLU())
        self.head = nn.Linear(1024, 10)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context = 0.9 * context + 0.1 * self.encoder(x)
        return self.head(context), context


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ContextModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    context = torch.zeros(args.batch, 1024)
    for _ in range(args.steps):
        x = torch.randn(args.batch, 64)
        y = torch.randint(0, 10, (args.batch,))
        context = context.detach()  # history stops at the step boundary
        logits, context = model(x, context)
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
