"""OOM back-off that retries *inside* the ``except`` block (the classic broken version).

    memwatch run --budget 16MiB samples/oom/retry_loop_broken.py

With a 16 MiB budget on a CPU batch 2048 does not fit; the handler halves the batch and
calls ``fit`` again from inside ``except``. The retry then starts while the failed
attempt is still referenced: ``x``, ``pred`` and ``loss`` (with its autograd graph, i.e.
every saved activation) are variables of the frame that is still running, and ``exc``
(being handled, so also ``sys.exc_info()``) keeps its traceback and the frames it passed
through. Each retry starts with every earlier attempt still held, so under 16 MiB the
back-off never succeeds: it gives up at batch 32, although 1024 fits (see the fixed twin,
``retry_loop_fixed.py``). memwatch reports ``oom-retry-loop`` naming the holders and the
bytes they hold.

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
    """One training step at ``batch``; on OOM halve the batch and try again. BUG inside."""
    try:
        x, y = make_batch(batch)
        pred = model(x)
        loss = nn.functional.cross_entropy(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return batch
    except torch.OutOfMemoryError as exc:
        print(f"out of memory at batch {batch}: {exc}")
        if batch <= MIN_BATCH:
            return None
        return fit(model, optimizer, batch // 2)  # BUG: retrying while `exc` and x/pred/loss live


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
        # Every retry started with all failed attempts still held, so nothing ever fit.
        print(f"gave up: no batch size down to {MIN_BATCH} fits (retry_loop_fixed.py finds one)")
        return
    for _ in range(args.steps - 1):
        batch = fit(model, optimizer, batch)
    print(f"training at batch {batch}")


if __name__ == "__main__":
    main()
