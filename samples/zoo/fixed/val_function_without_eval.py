"""Why during validation not using model.eval()? BN and dropout stay in training mode.

Source: https://github.com/nshaud/DeepHyperX/issues/51
Reported: the val() function of the hyperspectral training script evaluated models that
have batch norm and dropout layers without calling net.eval(), so validation ran with
dropout active and batch statistics updated by validation data.
Shape: a plain val(net, data_loader) function called after each epoch from train().
"""

import torch
from torch import nn


class HamidaEtAl(nn.Module):
    def __init__(self, n_bands=20, n_classes=6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 16, 3), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2)
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16 * 9, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def val(net, data_loader):
    accuracy, total = 0.0, 0.0
    net.eval()
    with torch.no_grad():
        for data, target in data_loader:
            output = net(data)
            accuracy += (output.argmax(dim=1) == target).sum().item()
            total += target.numel()
    return accuracy / total


def train(net, optimizer, criterion, data_loader, val_loader, epochs):
    for e in range(epochs):
        net.train()
        for data, target in data_loader:
            optimizer.zero_grad()
            loss = criterion(net(data), target)
            loss.backward()
            optimizer.step()
        print(f"epoch {e}: val acc {val(net, val_loader):.3f}")


def main():
    torch.manual_seed(0)
    net = HamidaEtAl()
    batch = lambda: (torch.randn(16, 1, 20), torch.randint(0, 6, (16,)))  # noqa: E731
    train(
        net,
        torch.optim.Adam(net.parameters(), lr=1e-3),
        nn.CrossEntropyLoss(),
        [batch() for _ in range(15)],
        [batch() for _ in range(5)],
        epochs=3,
    )


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
