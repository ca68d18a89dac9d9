"""Memory leak when running an attribution (LRP) composite several times in a row.

Source: https://github.com/chr5tphr/zennit/issues/11  (fix: https://github.com/chr5tphr/zennit/pull/13)
Reported: computing heatmaps repeatedly with a composite's hooks leaked memory; the
reference to `hook.input` was retained "possibly due to cyclic references"; the fix removes
the stored tensors when the hooks are removed and gives the backward wrapper only a weak
reference to the hook.
Shape: every attribution builds a modified copy of the model and a composite whose hook
objects keep `self.module` and their stored input/output tensors; the module keeps the
hook's bound method in `_forward_hooks`: module -> hook -> module, a reference cycle that
only the garbage collector frees, with the tensors inside.
"""

import copy

import torch
from torch import nn

ZOO = {
    "expect": "tensors-in-gc-cycle",
    "also_ok": ["memory-growth"],
    "culprit": "input",
    "frameworks": [],
}


class EpsilonHook:
    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = epsilon
        self.stored_tensors: dict[str, torch.Tensor] = {}

    def forward(self, module, inputs, output) -> None:
        self.stored_tensors["input"] = inputs[0]
        self.stored_tensors["output"] = output

    def register(self, module: nn.Module) -> None:
        self.module = module
        self.handle = module.register_forward_hook(self.forward)


class Composite:
    def __init__(self) -> None:
        self.hooks: list[EpsilonHook] = []

    def register(self, model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                hook = EpsilonHook()
                hook.register(module)
                self.hooks.append(hook)

    # BUG: no remove(): the hooks, their modules and stored tensors form cycles


def attribute(model: nn.Module, data: torch.Tensor, target: int) -> torch.Tensor:
    modified = copy.deepcopy(model)
    composite = Composite()
    composite.register(modified)
    data = data.clone().requires_grad_(True)
    pred = modified(data)
    grad = torch.zeros_like(pred)
    grad[:, target] = 1.0
    torch.autograd.backward((pred,), (grad,))
    return data.grad.sum(1)


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 32 * 32, 10),
    ).eval()
    for i in range(40):
        data = torch.randn(4, 3, 32, 32)
        heatmap = attribute(model, data, target=i % 10)
        if i % 10 == 0:
            print(f"heatmap {i}: {heatmap.abs().mean().item():.4f}")


if __name__ == "__main__":
    main()
