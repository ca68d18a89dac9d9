"""OOM back-off done right: leave the ``except`` block, drop the attempt, then retry.

    memwatch run --budget 16MiB samples/oom/retry_loop_fixed.py

The same model and batch sizes as ``retry_loop_broken.py``. With a 16 MiB budget on a CPU
batch 2048 does not fit; the handler only sets a flag. After the ``except`` block the
exception and its traceback are gone; the attempt's tensors are dropped and the partial
gradients cleared, so the retry at 1024 starts from the memory used before the failed
attempt and fits. memwatch records the OOM and the retry, and reports no
``oom-retry-loop``.

Without a budget on a CPU nothing runs out; on a GPU pick a budget that leaves room for
the CUDA context and the cuBLAS workspace.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

MIN_BATCH = 32


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )


def make_batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 128), torch.randint(0, 10, (batch,))


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, batch: int) -> int | None:
    """One training step at the largest of ``batch``, ``batch // 2``, ... that fits."""
    while batch >= MIN_BATCH:
        x = y = pred = loss = None
        failed = False
        try:
            x, y = make_batch(batch)
            pred = model(x)
            loss = nn.functional.cross_entropy(pred, y)
            loss.backward()
            optimizer.step()
        except torch.OutOfMemoryError as exc:
            print(f"out of memory at batch {batch}: {exc}")
            failed = True  # no retry in here: `exc` keeps the failed attempt alive
        # Out of the except block: `exc` and its traceback are gone. Drop the attempt.
        del x, y, pred, loss
        optimizer.zero_grad(set_to_none=True)  # partial gradients of a failed backward
        if not failed:
            return batch
        batch //= 2
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = fit(model, optimizer, args.batch)
    if batch is None:
        print(f"no batch size down to {MIN_BATCH} fits")
        return
    for _ in range(args.steps - 1):
        batch = fit(model, optimizer, batch)
    print(f"training at batch {batch}")


if __name__ == "__main__":
    main()
