"""Forward hooks registered for each evaluation and removed with their handles afterwards.

Pattern: https://github.com/fffasttime/MRFI/pull/5
(the fix: keep the RemovableHandle objects and call `.remove()`)
Reported: registering hooks is fine when every handle is kept and removed; here each
evaluation (every 10 steps) registers feature-capture hooks, stores detached summaries, and
removes the hooks in a `finally`, so the hook count returns to zero.
Shape: a context-manager helper class (`capture_features`) holding handles and a dict of
per-layer feature means.
"""

import contextlib

import torch
from torch import nn

ZOO = {"expect": None}


@contextlib.contextmanager
def capture_features(model: nn.Module):
    features: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):

            def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor, name: str = name) -> None:
                features[name] = output.detach().mean(dim=0)

            handles.append(module.register_forward_hook(hook))
    try:
        yield features
    finally:
        for handle in handles:
            handle.remove()


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x_val = torch.randn(256, 32)
    for step in range(40):
        x = torch.randn(64, 32)
        loss = nn.functional.cross_entropy(model(x), x[:, :4].argmax(dim=1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % 10 == 0:
            model.eval()
            with torch.no_grad(), capture_features(model) as feats:
                model(x_val)
            model.train()
            print(
                f"step {step + 1}: {len(feats)} layers, hooks left {len(model[0]._forward_hooks)}"
            )


if __name__ == "__main__":
    main()
