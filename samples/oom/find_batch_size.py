"""Find the largest batch that fits with ``memwatch.find_batch_size``, then train with it.

    memwatch run --budget 16MiB samples/oom/find_batch_size.py

Same model as the retry-loop samples. Under a 16 MiB budget on a CPU, 2048 does not fit;
the search measures the peak of the trials that do fit, predicts the largest size from
the bytes per sample, and verifies it (and the size above it) instead of halving and
bisecting. Between trials it drops the failed attempt, so memwatch records the OOMs and
no ``oom-retry-loop``. It prints what it tried; a 10% safety margin is kept free.

``python samples/oom/find_batch_size.py --budget 16MiB`` does the same without a watch.
The search trains the model for a few steps (its trials are real steps); reload the
weights afterwards when that matters.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import memwatch


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )


def make_batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 128), torch.randint(0, 10, (batch,))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--budget", default=None, help="only when not under memwatch run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def train_step(batch: int) -> float:
        try:
            x, y = make_batch(batch)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            return loss.item()
        finally:
            optimizer.zero_grad(set_to_none=True)  # also after an OOM in backward

    result = memwatch.find_batch_size(train_step, args.start, budget=args.budget)
    print(result)
    if result.batch_size is None:
        return
    for _ in range(args.steps):
        loss = train_step(result.batch_size)
    print(f"trained {args.steps} steps at batch {result.batch_size}, loss {loss:.4f}")


if __name__ == "__main__":
    main()
