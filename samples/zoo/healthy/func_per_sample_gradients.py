"""Per-sample gradients with torch.func (vmap over grad of a functional_call).

Pattern: https://docs.pytorch.org/tutorials/intermediate/per_sample_grads.html
Looks risky: gradients computed without .backward(), a batch of gradient tensors the
size of the model times the batch each step, parameters detached into a dict.
Shape: DP-SGD-like clipping of per-sample gradients, then a manual update under no_grad.
"""

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))

    def compute_loss(params, buffers, sample, target):
        out = functional_call(model, (params, buffers), (sample[None],))
        return nn.functional.cross_entropy(out, target[None])

    per_sample_grad = vmap(grad(compute_loss), in_dims=(None, None, 0, 0))
    for step in range(40):
        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = {k: v.detach() for k, v in model.named_buffers()}
        x, y = torch.randn(32, 10), torch.randint(0, 2, (32,))
        grads = per_sample_grad(params, buffers, x, y)
        with torch.no_grad():
            for name, p in model.named_parameters():
                g = grads[name]
                norms = g.flatten(1).norm(dim=1).clamp(min=1.0)
                p -= 0.1 * (g / norms.view(-1, *[1] * (g.dim() - 1))).mean(0)
        if step % 10 == 0:
            with torch.no_grad():
                print(step, f"{nn.functional.cross_entropy(model(x), y).item():.3f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
