"""Need to set the model to 'eval' mode when assessing the validation data.

Source: https://github.com/wolny/pytorch-3dunet/issues/53
Reported: the trainer's validate() ran the validation batches with the model still in
training mode; harmless with group norm, but with dropout or batch norm the validation
predictions "didn't make any sense". The fix calls self.model.eval() before validating
and self.model.train() after.
Shape: a trainer object holding the model as an attribute; validation every
`validate_after_iters` iterations, under torch.no_grad().
"""

import torch
from torch import nn


class UNet3DTrainer:
    def __init__(self, model, optimizer, loss_criterion, validate_after_iters):
        self.model = model
        self.optimizer = optimizer
        self.loss_criterion = loss_criterion
        self.validate_after_iters = validate_after_iters
        self.num_iterations = 0

    def train(self, train_loader, val_loader):
        self.model.train()
        for input, target in train_loader:
            loss = self.loss_criterion(self.model(input), target)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.num_iterations += 1
            if self.num_iterations % self.validate_after_iters == 0:
                print(f"iter {self.num_iterations}: val loss {self.validate(val_loader):.4f}")

    def validate(self, val_loader):
        losses = []
        self.model.eval()
        with torch.no_grad():
            for input, target in val_loader:
                losses.append(self.loss_criterion(self.model(input), target).item())
        self.model.train()
        return sum(losses) / len(losses)


def main():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1),
        nn.BatchNorm3d(8),
        nn.ReLU(),
        nn.Dropout3d(0.2),
        nn.Conv3d(8, 2, 1),
    )
    trainer = UNet3DTrainer(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-3),
        nn.CrossEntropyLoss(),
        validate_after_iters=10,
    )
    batch = lambda: (torch.randn(2, 1, 8, 8, 8), torch.randint(0, 2, (2, 8, 8, 8)))  # noqa: E731
    trainer.train([batch() for _ in range(40)], [batch() for _ in range(4)])


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
