"""Bug: micro-batch losses are summed and backward runs once, so all graphs live at once.

Splitting a batch into micro-batches is meant to cap memory at one micro-batch's
activations, but summing the losses first keeps every micro-batch's graph alive until
the single backward: the peak is the same as the whole batch at once.

    memwatch run samples/bugs/microbatch_graph_accumulation.py --steps 20

Expected: microbatch-graph-accumulation (warning) at the `total.backward()` line,
variable `total`. The fixed twin is microbatch_graph_accumulation_fixed.py.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--micro", type=int, default=4)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    for _ in range(args.steps):
        x, y = torch.randn(args.batch, 128), torch.randint(0, 10, (args.batch,))
        optimizer.zero_grad(set_to_none=True)
        micro_batches = zip(x.chunk(args.micro), y.chunk(args.micro))
        # BUG: the sum keeps every micro-batch's graph alive until the one backward
        total = sum(loss_fn(model(xm), ym) for xm, ym in micro_batches) / args.micro
        total.backward()
        optimizer.step()
    print(f"final loss {total.item():.4f}")


if __name__ == "__main__":
    main()
