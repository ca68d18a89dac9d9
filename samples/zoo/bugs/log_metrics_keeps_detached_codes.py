"""GPU memory leak: `logs['z'].append(z.detach()[::10])` grows indefinitely when monitoring.

Source: https://github.com/KempnerInstitute/overcomplete/issues/5
Reported: with `monitoring=2`, the training loop's `_log_metrics` stored a strided slice of
the codes `z` every step (`logs['z'].append(z.detach()[::10])`) next to scalar metrics; the
list grew on the GPU without bound (the slice is a view, so each entry keeps the whole batch
of codes alive). The maintainer considered removing the line altogether.
Shape: a helper `_log_metrics(monitoring, logs, ...)` filling a defaultdict of lists; the
other entries are `.item()` floats (fine); a sparse autoencoder training loop.
"""

from collections import defaultdict

import torch
from torch import nn

ZOO = {
    "expect": "memory-growth",
    "culprit": "logs",
    "line": 'logs["z"].append(',
    "frameworks": [],
}


class SAE(nn.Module):
    def __init__(self, d: int = 128, n_concepts: int = 1024) -> None:
        super().__init__()
        self.encoder = nn.Linear(d, n_concepts)
        self.dictionary = nn.Parameter(torch.randn(n_concepts, d) * 0.05)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.relu(self.encoder(x))
        return z, z @ self.dictionary


def _log_metrics(
    monitoring: int, logs: dict, model: SAE, z: torch.Tensor, loss: torch.Tensor
) -> None:
    logs["loss"].append(loss.item())
    if monitoring > 1:
        logs["z"].append(z.detach()[::10])  # BUG: a view that keeps every step's codes alive
        logs["z_l2"].append(z.norm(dim=-1).mean().item())
        for name, param in model.named_parameters():
            if param.grad is not None:
                logs[f"params_grad_norm_{name}"].append(param.grad.norm().item())


def main() -> None:
    torch.manual_seed(0)
    model = SAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    logs: dict = defaultdict(list)
    for _ in range(40):
        x = torch.randn(256, 128)
        z, x_hat = model(x)
        loss = (x - x_hat).pow(2).mean() + 1e-3 * z.abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _log_metrics(2, logs, model, z, loss)
    print(f"logged {len(logs['z'])} code slices, last loss {logs['loss'][-1]:.4f}")


if __name__ == "__main__":
    main()
