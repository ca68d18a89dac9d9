"""Bug: `backward(retain_graph=True)` keeps every step's graph and activations alive.

The model mixes each batch's features into a running `context` that the loop passes
back in, never detached, so backward reaches into the previous steps' graphs. PyTorch
then refuses ("Trying to backward through the graph a second time") and
`retain_graph=True` makes the error go away: every step's saved activations now stay
alive, step after step.

    memwatch run samples/bugs/retain_graph_leak.py --steps 30

Expected: retain-graph-leak (error) at the `loss.backward(retain_graph=True)` line,
variable `loss` (and graph-accumulation on `context`, the tensor that carries history).
The fixed twin is retain_graph_leak_fixed.py.
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
        logits, context = model(x, context)  # context carries the graph into the next step
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward(retain_graph=True)  # BUG: silences the error by keeping every graph
        optimizer.step()
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
