"""Out of memory during validation: the validate() forward runs with autograd on.

Source: https://github.com/hszhao/semseg/issues/60
Reported: "out of memory" occurred when validating after each epoch; validate() called
`model.eval()` but ran `output = model(input)` without `torch.no_grad()`, so every
validation forward saved its activations for a backward that never came.
Shape: a validate() helper with AverageMeters (fed `.item()`), called once per epoch.
"""

import torch
from torch import nn


class AverageMeter:
    def __init__(self):
        self.sum, self.count = 0.0, 0

    def update(self, val, n=1):
        self.sum += val * n
        self.count += n

    @property
    def avg(self):
        return self.sum / max(self.count, 1)


def make_model():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 5, 1),
    )


def train(train_loader, model, criterion, optimizer):
    model.train()
    for input, target in train_loader:
        loss = criterion(model(input), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def validate(val_loader, model, criterion):
    loss_meter = AverageMeter()
    model.eval()
    for input, target in val_loader:
        output = model(input)  # BUG: under torch.no_grad()
        loss = criterion(output, target)
        loss_meter.update(loss.item(), input.size(0))
    return loss_meter.avg


def main():
    torch.manual_seed(0)
    model = make_model()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_loader = [
        (torch.randn(4, 3, 24, 24), torch.randint(0, 5, (4, 24, 24))) for _ in range(10)
    ]
    val_loader = [(torch.randn(4, 3, 24, 24), torch.randint(0, 5, (4, 24, 24))) for _ in range(8)]
    for epoch in range(4):
        train(train_loader, model, criterion, optimizer)
        print(f"epoch {epoch}: val loss {validate(val_loader, model, criterion):.4f}")


ZOO = {
    "expect": "graph-retained-in-inference",
    "culprit": "model",
    "line": "output = model(input)",
}

if __name__ == "__main__":
    main()
