"""Data-parallel training (DDP, gloo, CPU) where one rank can be made to leak.

    torchrun --nproc-per-node 2 -m memwatch run --out runs/ddp samples/ddp_training.py
    torchrun --nproc-per-node 2 -m memwatch run --out runs/ddp samples/ddp_training.py \\
        --leak-rank 1
    memwatch report runs/ddp

Every rank trains the same MLP on its own shard of synthetic data; DDP averages the
gradients. With ``--leak-rank R``, rank R (only) also computes a "debug metric" each step
with autograd still on and adds it to a running total: the total keeps every step's graph
alive, and with it the activations saved for backward, so that rank's memory grows while
the others stay flat. That is the shape of a real multi-rank bug (logging or evaluation
code guarded by ``if rank == ...``) and what memwatch's ``rank-imbalance`` finding names.

Without torchrun (``python samples/ddp_training.py``) it runs as a world of one.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def init_process_group() -> tuple[int, int]:
    """Join the group torchrun describes in the environment, or form a world of one."""
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    else:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    return dist.get_rank(), dist.get_world_size()


def batches(rank: int, batch: int, features: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's shard of a synthetic regression stream (seeded by rank), one batch a step."""
    generator = torch.Generator().manual_seed(1000 + rank)
    while True:
        x = torch.randn(batch, features, generator=generator)
        y = x[:, :1] * 0.5 + 0.1 * torch.randn(batch, 1, generator=generator)
        yield x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument(
        "--leak-rank", type=int, default=None, help="keep every step's graph alive on this rank"
    )
    args = parser.parse_args()

    torch.set_num_threads(1)
    rank, world_size = init_process_group()
    torch.manual_seed(0)  # same initial weights everywhere (DDP also broadcasts rank 0's)
    features = 64
    model = DistributedDataParallel(
        nn.Sequential(
            nn.Linear(features, args.hidden),
            nn.ReLU(),
            nn.Linear(args.hidden, args.hidden),
            nn.ReLU(),
            nn.Linear(args.hidden, 1),
        )
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss_fn = nn.MSELoss()
    data = batches(rank, args.batch, features)

    debug_metric = torch.zeros(())
    for _ in range(args.steps):
        x, y = next(data)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()  # DDP all-reduces the gradients here
        optimizer.step()
        if rank == args.leak_rank:
            # BUG (planted): autograd is on, so the running total keeps this forward's
            # graph, and its saved activations, alive for the rest of the run.
            # Fix: compute it under torch.no_grad(), or accumulate `.item()`.
            debug_metric = debug_metric + model.module(x).abs().mean()
    if rank == 0:
        print(f"rank 0 of {world_size}: final loss {loss.item():.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
