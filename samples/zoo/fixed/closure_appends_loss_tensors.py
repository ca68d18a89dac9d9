"""Fix the memory leak when calling line search for training Lyapunov: the closure keeps losses.

Source: https://github.com/StanfordASL/neural-network-lyapunov/pull/140
Reported: training the Lyapunov network with a line-search optimizer leaked memory; the
fix: "closure should return only loss, and losses list only stores the float value, not
the tensor".
Shape: a closure passed to optimizer.step(closure) appends each evaluation's loss tensor
to a list captured from the enclosing function (LBFGS calls it several times per step).
"""

import torch
from torch import nn


def train_lyapunov(relu, x_samples, max_iterations):
    optimizer = torch.optim.LBFGS(
        relu.parameters(), lr=0.5, max_iter=3, line_search_fn="strong_wolfe"
    )
    losses = []

    def closure():
        optimizer.zero_grad()
        v = relu(x_samples)
        v_next = relu(0.9 * x_samples)
        loss = (
            torch.relu(v_next - v + 0.01 * x_samples.norm(dim=1, keepdim=True)).mean()
            + 1e-3 * v.pow(2).mean()
        )
        loss.backward()
        losses.append(loss.item())
        return loss

    for _ in range(max_iterations):
        optimizer.step(closure)
    return losses


def main():
    torch.manual_seed(0)
    relu = nn.Sequential(
        nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)
    )
    losses = train_lyapunov(relu, torch.randn(256, 2), max_iterations=20)
    print(len(losses), f"{float(losses[-1]):.5f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
