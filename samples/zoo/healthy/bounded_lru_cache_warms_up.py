"""A bounded `lru_cache` of rotary tables that warms up, then stays flat.

Pattern: https://github.com/pymc-devs/pytensor/pull/1660
(`lru_cache` has a default limit of 128; the unbounded `cache` grew)
Reported: a module-level function cached with a bound, keyed by (sequence length, dim), fills
up over the first steps while new lengths appear and then stops growing; memory rises early
and plateaus, which must not read as a leak.
Shape: module-level `@functools.lru_cache(maxsize=8)` function returning tensors; sequence
lengths drawn from 6 buckets.
"""

import functools

import torch
from torch import nn

ZOO = {"expect": None}


@functools.lru_cache(maxsize=8)
def rotary_table(seq_len: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
    angles = torch.arange(seq_len).float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor) -> torch.Tensor:
    cos, sin = rotary_table(x.size(1), x.size(2))
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    buckets = [64, 96, 128, 192, 256, 384]
    for step in range(40):
        seq_len = buckets[step % len(buckets)]
        x = torch.randn(8, seq_len, 128)
        loss = model(rotate(x)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(rotary_table.cache_info())


if __name__ == "__main__":
    main()
