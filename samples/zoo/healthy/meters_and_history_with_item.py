"""Loss and accuracy meters, per-epoch history for plotting: every value is a Python number.

Pattern: https://github.com/pytorch/pytorch/pull/6017
Looks risky: meters updated every step, lists appended every step and kept for the whole
run, a dict of histories; everything stored is `loss.item()` / `float(...)`, which keeps no
graph (the PyTorch FAQ's advice for `total_loss += loss`).
Shape: an AverageMeter class, a `history` dict of lists, and a module-level list for plots.
"""

import torch
from torch import nn

PLOT_POINTS = []


class AverageMeter:
    def __init__(self):
        self.val = self.sum = self.avg = 0.0
        self.count = 0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = {"loss": [], "acc": []}
    for _epoch in range(3):
        losses, top1 = AverageMeter(), AverageMeter()
        for _ in range(20):
            x, y = torch.randn(32, 20), torch.randint(0, 5, (32,))
            output = model(x)
            loss = nn.functional.cross_entropy(output, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.update(loss.item(), x.size(0))
            top1.update(float((output.argmax(1) == y).float().mean()), x.size(0))
            PLOT_POINTS.append(loss.item())
        history["loss"].append(losses.avg)
        history["acc"].append(top1.avg)
    print(history, len(PLOT_POINTS))


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
