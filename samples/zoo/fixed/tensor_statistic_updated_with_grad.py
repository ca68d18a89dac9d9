"""Memory on update of tensors: a layer's running statistic keeps every batch's graph.

Source: https://github.com/growingnet/gromo/issues/137
Reported: the statistics a growing layer updates each batch (sums of input outer
products) had `requires_grad = True`, so every addition stayed in the computational graph
and the allocated memory kept increasing.
Shape: a TensorStatistic helper object owned by a module, updated from a forward hook.
"""

import torch
from torch import nn


class TensorStatistic:
    """Running mean of x^T x over the samples seen so far."""

    def __init__(self, size: int) -> None:
        self._tensor = torch.zeros(size, size)
        self.samples = 0

    def update(self, x: torch.Tensor) -> None:
        self._tensor = self._tensor + (x.T @ x).detach()
        self.samples += x.shape[0]

    def __call__(self) -> torch.Tensor:
        return self._tensor / max(self.samples, 1)


class GrowingLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(n_in, n_out)
        self.tensor_s = TensorStatistic(n_in)
        self.register_forward_hook(lambda module, args, out: module.tensor_s.update(args[0]))


def main():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 24), nn.ReLU(), GrowingLinear(24, 24), nn.ReLU(), nn.Linear(24, 1)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(50):
        x, y = torch.randn(64, 8), torch.randn(64, 1)
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print("S trace", float(model[2].tensor_s().trace()))


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
