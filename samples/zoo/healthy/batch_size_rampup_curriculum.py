"""Batch-size ramp-up: the batch grows every few steps, so memory per step rises by design.

Pattern: https://github.com/karpathy/nanoGPT/pull/160  ("Add Linear batch_size Scheduler")
Reported: linearly increasing the training batch size until a maximum is reached; each step's
activations are larger than the last one's for a while, then flat. Nothing is kept across
steps: the rise is the schedule, not a leak.
Shape: a `get_batch(step)` helper with a linear ramp from 8 to 128 rows over 30 steps.
"""

import torch
from torch import nn

ZOO = {"expect": None}

MIN_BS, MAX_BS, RAMP_STEPS = 8, 128, 30


def batch_size_at(step: int) -> int:
    return min(MAX_BS, MIN_BS + (MAX_BS - MIN_BS) * step // RAMP_STEPS)


def get_batch(step: int, data: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    bs = batch_size_at(step)
    ix = torch.randint(0, data.size(0) - block - 1, (bs,)).tolist()
    x = torch.stack([data[i : i + block] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + block] for i in ix])
    return x, y


def main() -> None:
    torch.manual_seed(0)
    vocab, block = 64, 16
    data = torch.randint(0, vocab, (20_000,))
    model = nn.Sequential(
        nn.Embedding(vocab, 64), nn.Linear(64, 256), nn.GELU(), nn.Linear(256, vocab)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    for step in range(40):
        x, y = get_batch(step, data, block)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.view(-1, vocab), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step}: bs {x.size(0)} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
