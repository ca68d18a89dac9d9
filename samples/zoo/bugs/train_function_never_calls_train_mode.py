"""[quickstart_tutorial] why model.eval() is not turned off at the training stage.

Source: https://github.com/pytorch/tutorials/issues/1624
Reported: test() calls model.eval(), but train() never calls model.train(), so from the
second epoch on the model trains in evaluation mode (dropout off, batch norm frozen); the
reporter asked for model.train() at the beginning of train().
Shape: the tutorial's train()/test() functions with a dataloader, a model with dropout.
"""

import torch
from torch import nn


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(8 * 8, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10)
        )

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


def train(dataloader, model, loss_fn, optimizer):
    # BUG: model.train() is missing here
    for X, y in dataloader:
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test(dataloader, model, loss_fn):
    model.eval()
    correct = 0
    with torch.no_grad():
        for X, y in dataloader:
            correct += (model(X).argmax(1) == y).sum().item()
    return correct / (len(dataloader) * 16)


def main():
    torch.manual_seed(0)
    model = NeuralNetwork()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    batch = lambda: (torch.randn(16, 8, 8), torch.randint(0, 10, (16,)))  # noqa: E731
    train_dataloader, test_dataloader = [batch() for _ in range(15)], [batch() for _ in range(4)]
    for t in range(4):
        train(train_dataloader, model, loss_fn, optimizer)
        print(f"Epoch {t + 1}: accuracy {test(test_dataloader, model, loss_fn):.2f}")


ZOO = {
    "expect": "train-mode-smell",
    "culprit": "model",
}

if __name__ == "__main__":
    main()
