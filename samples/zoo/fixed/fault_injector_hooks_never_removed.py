"""MRFI: every fault-injection object leaves its hooks on the model (handles discarded).

Source: https://github.com/fffasttime/MRFI/pull/5
Reported: each `MRFI(...)` instantiation registered forward pre-hooks and forward hooks on
the model's modules and discarded the `RemovableHandle`s, so the hooks (and the closures
with their config and recorded tensors) stayed alive; over a fault-injection campaign memory
grew until the process ran out.
Shape: a helper class created once per campaign round (every 5 steps) registers hooks whose
closures record activations into the helper's own dict; nothing removes them.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class FaultInjector:
    def __init__(self, model: nn.Module, rate: float) -> None:
        self.rate = rate
        self.observed: dict[str, torch.Tensor] = {}
        self.handles = []
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                self.handles.append(module.register_forward_hook(self._make_hook(name)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _make_hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            self.observed[name] = output.detach().clone()
            mask = torch.rand_like(output) < self.rate
            return torch.where(mask, torch.zeros_like(output), output)

        return hook


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 8)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    injector = None
    for step in range(40):
        if step % 5 == 0:
            if injector is not None:
                injector.remove()  # FIX: the previous round's hooks go
            injector = FaultInjector(model, rate=1e-3 * (1 + step // 5))
        x, y = torch.randn(64, 64), torch.randint(0, 8, (64,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print("hooks on layer 0:", len(model[0]._forward_hooks), "last rate", injector.rate)


if __name__ == "__main__":
    main()
