"""torch.no_grad() creates memory leak because of forward hook (Opacus).

Source: https://github.com/meta-pytorch/opacus/issues/176
Reported: evaluating under `torch.no_grad()` while the model was still in training mode
made the per-sample-gradient forward hooks save every activation, and nothing deleted
them (no backward consumed them). Setting model.eval() fixed it.
Shape: forward hooks append inputs to a list attribute on each layer; the backward hooks
of the training step pop them; an evaluation every k steps runs in training mode.
"""

import torch
from torch import nn


class GradSampleModule(nn.Module):
    """Records each Linear layer's input in training mode for per-sample gradients."""

    def __init__(self, module):
        super().__init__()
        self._module = module
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                layer.activations = []
                layer.register_forward_hook(self.capture_activations_hook)
                layer.register_full_backward_hook(self.capture_backprops_hook)

    @staticmethod
    def capture_activations_hook(module, forward_input, _forward_output):
        if module.training:
            module.activations.append(forward_input[0].detach())

    @staticmethod
    def capture_backprops_hook(module, _grad_input, grad_output):
        activations = module.activations.pop()
        module.grad_sample = torch.einsum("ni,nj->nij", grad_output[0], activations)

    def forward(self, x):
        return self._module(x)


def main():
    torch.manual_seed(0)
    model = GradSampleModule(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(1, 61):
        x, y = torch.randn(32, 32), torch.randint(0, 10, (32,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            model.eval()
            with torch.no_grad():
                for _ in range(4):
                    model(torch.randn(256, 32))
            model.train()
    print("kept activations:", len(model._module[0].activations))


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
