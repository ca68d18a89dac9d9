"""Monte Carlo dropout: eval mode with only the Dropout layers switched back to train.

Pattern: https://forums.fast.ai/t/pr-ability-to-use-dropout-at-prediction-time-monte-carlo-dropout/47080
Looks risky: Dropout layers run in training mode during prediction, and many stochastic
forwards run per evaluation; BatchNorm stays in eval mode and everything runs under
no_grad, so it is a deliberate, correct use of dropout at prediction time.
Shape: an `apply_dropout` function passed to model.apply(), predictions stacked per pass.
"""

import torch
from torch import nn


def apply_dropout(m):
    if "dropout" in m.__class__.__name__.lower():
        m.train()


@torch.no_grad()
def predict_with_mc_dropout(model, x, n_times=10):
    model.eval()
    model.apply(apply_dropout)
    preds = torch.stack([torch.softmax(model(x), dim=1) for _ in range(n_times)])
    model.train()
    return preds.mean(0), preds.var(0)


def main():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 3)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(1, 51):
        x, y = torch.randn(32, 16), torch.randint(0, 3, (32,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            _, var = predict_with_mc_dropout(model, torch.randn(64, 16))
            print(step, f"uncertainty {var.sum(1).mean().item():.4f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
