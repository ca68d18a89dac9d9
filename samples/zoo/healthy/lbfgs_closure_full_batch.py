"""Full-batch L-BFGS: the optimizer calls the closure several times per step.

Pattern: https://discuss.pytorch.org/t/optimizer-step-closure/129306
Looks risky: many forwards and backwards per optimizer step, zero_grad inside the closure,
and the loss returned to the optimizer; the loop logs `loss.item()` only.
Shape: curve fitting with a closure defined inside the loop.
"""

import torch
from torch import nn


def main():
    torch.manual_seed(0)
    x = torch.linspace(-3, 3, 256)[:, None]
    y = torch.sin(x) + 0.05 * torch.randn_like(x)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5, history_size=10)
    history = []
    for _ in range(20):

        def closure():
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        loss = optimizer.step(closure)
        history.append(loss.item())
    print(f"final mse {history[-1]:.5f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
