"""Bug: a forward hook keeps every step's activations in a module-level list.

    memwatch run samples/bugs/memory_growth.py

`ACTIVATIONS.append(output.detach())` was meant for a quick look at the features, but
the hook runs at every forward and nothing ever empties the list: tensor memory grows by
one activation per step until the process runs out. (The tensors are detached, so no
graph is kept: this is plain growth, not graph accumulation.) memwatch reports
`memory-growth` for `ACTIVATIONS` at the append. The `best_model` copy is deliberate
and one-time: it must not be reported. The fixed twin (`memory_growth_fixed.py`) keeps
only the latest activation.
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

ACTIVATIONS: list[torch.Tensor] = []


def keep_features(
    module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
) -> None:
    ACTIVATIONS.append(output.detach())  # BUG: one more activation every step, never freed


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
    print(f"kept {len(ACTIVATIONS)} activations; best loss {best_loss:.3f}")


if __name__ == "__main__":
    main()
