"""Fixed twin of memory_growth.py: the hook keeps only the latest activation.

    memwatch run samples/bugs/memory_growth_fixed.py

`LATEST["relu"] = output.detach()` replaces the previous entry instead of adding one,
so the features stay available for a look and memory stays flat. The one-time
`best_model` copy is still there and is not a leak.
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

LATEST: dict[str, torch.Tensor] = {}


def keep_features(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
) -> None:
    LATEST["relu"] = output.detach()  # replaces last step's entry: bounded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    model = nn.Sequential(nn.Linear(128, 1024), nn.ReLU(), nn.Linear(1024, 10))
    model[1].register_forward_hook(keep_features)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best_loss, best_model = float("inf"), None
    for _ in range(args.steps):
        x = torch.randn(args.batch, 128)
        y = torch.randint(0, 10, (args.batch,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if best_model is None:
            best_loss, best_model = loss.item(), copy.deepcopy(model)
    print(f"kept {len(LATEST)} activation; best loss {best_loss:.3f}")


if __name__ == "__main__":
    main()
