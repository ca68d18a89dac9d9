"""Exponential moving average of the weights, kept in a dict and updated under no_grad.

Pattern: https://github.com/fadel/pytorch_ema/issues/1
Looks risky: a dict of tensors the size of the model lives across all steps and is
rewritten every step from the parameters; the update runs under torch.no_grad(), so it
keeps no graph, and its size never changes.
Shape: a helper class holding `shadow[name]` tensors; evaluation swaps them in.
"""

import torch
from torch import nn


class ExponentialMovingAverage:
    def __init__(self, model, decay):
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model):
        for n, p in model.named_parameters():
            self.shadow[n].mul_(self.decay).add_(p, alpha=1 - self.decay)

    @torch.no_grad()
    def evaluate(self, model, x):
        backup = {n: p.detach().clone() for n, p in model.named_parameters()}
        for n, p in model.named_parameters():
            p.copy_(self.shadow[n])
        model.eval()
        out = model(x)
        model.train()
        for n, p in model.named_parameters():
            p.copy_(backup[n])
        return out


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ema = ExponentialMovingAverage(model, decay=0.99)
    for step in range(1, 51):
        x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model)
        if step % 10 == 0:
            print(step, float(ema.evaluate(model, x).argmax(1).eq(y).float().mean()))


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
