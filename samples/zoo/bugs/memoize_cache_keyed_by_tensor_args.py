"""A memoizing decorator keyed on all arguments grows without bound when tensors are passed.

Source: https://github.com/pytorch/tensordict/pull/454
Reported: the cache took the whole set of args and kwargs as its key, so when a tensor was
passed (e.g. as a default value) the cache grew substantially, one entry per call; the fix
keys on ids/strings only.
Shape: a module-level memoize decorator whose cache dict lives in its closure; the cached
function receives the batch tensor, so every step adds a key and a result tensor.
"""

import functools

import torch
from torch import nn

ZOO = {
    "expect": "memory-growth",
    "culprit": "cache",
    "line": "cache[key] = ",
    "frameworks": [],
}


def memoize(fn):
    cache: dict = {}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = fn(*args, **kwargs)  # BUG: tensor arguments make every call a new key
        return cache[key]

    return wrapper


@memoize
def positional_table(x: torch.Tensor, dim: int = 256) -> torch.Tensor:
    pos = torch.arange(x.size(1), dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2) * (-9.21 / dim))
    return (
        torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], dim=1)
        .expand(x.size(0), -1, -1)
        .contiguous()
    )


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(40):
        x = torch.randn(16, 64, 256)
        out = model(x + positional_table(x, dim=256))
        loss = out.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
