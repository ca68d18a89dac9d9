"""Feature extraction with forward hooks that store detached outputs, replaced every step.

Pattern: https://github.com/growingnet/gromo/issues/135
Looks risky: hooks on several layers write tensors into a dict on every forward, and a
feature-matching loss reads them; the stored values are `.detach()`ed for logging and the
dict is overwritten each step (it never grows).
Shape: a dict filled from closures registered as forward hooks, read by a logger.
"""

import torch
from torch import nn


def main():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 4)
    )
    features = {}

    def save_output(name):
        def hook(module, inputs, output):
            features[name] = output.detach()

        return hook

    handles = [model[i].register_forward_hook(save_output(f"layer{i}")) for i in (1, 3)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(50):
        x, y = torch.randn(64, 32), torch.randint(0, 4, (64,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(step, {k: round(v.mean().item(), 4) for k, v in features.items()})
    for handle in handles:
        handle.remove()


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
