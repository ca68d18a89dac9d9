"""Evaluation every k steps under torch.inference_mode() with model.eval()/model.train().

Pattern: https://docs.pytorch.org/docs/stable/generated/torch.autograd.grad_mode.inference_mode.html
Looks risky: forwards without a backward every k steps, on more data than a training
batch, with BatchNorm and Dropout in the model; inference mode and eval() make it right.
Shape: a trainer function with an inner evaluate() helper decorated with inference_mode.
"""

import torch
from torch import nn


@torch.inference_mode()
def evaluate(model, batches):
    model.eval()
    correct = sum((model(x).argmax(1) == y).sum().item() for x, y in batches)
    model.train()
    return correct / sum(len(y) for _, y in batches)


def main():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(20, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 4)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    val = [(torch.randn(256, 20), torch.randint(0, 4, (256,))) for _ in range(4)]
    model.train()
    for step in range(1, 61):
        x, y = torch.randn(32, 20), torch.randint(0, 4, (32,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 15 == 0:
            print(step, f"val acc {evaluate(model, val):.3f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
