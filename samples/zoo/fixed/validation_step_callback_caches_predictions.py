"""Should use torch.no_grad in validation_step()? GPU memory grows with each validation batch.

Source: https://github.com/skorch-dev/skorch/issues/218
Reported: fit() failed with out of memory; after each validation batch the GPU memory grew
until nothing was left. skorch's validation_step ran the module with grad enabled (missed
in the 0.4 migration), and the scoring callback caches every batch's y_pred for the epoch
score, so each cached prediction kept its graph. Wrapping validation_step in no_grad fixed it.
Shape: a NeuralNet class with a step method per phase and a callback object notified per
batch that caches predictions in a list.
"""

import torch
from torch import nn


class EpochScoring:
    """Caches predictions during the validation epoch and scores them at its end."""

    def __init__(self):
        self.y_preds_, self.y_trues_ = [], []

    def on_epoch_begin(self, net):
        self.y_preds_, self.y_trues_ = [], []

    def on_batch_end(self, net, y, y_pred, training):
        if not training:
            self.y_preds_.append(y_pred)
            self.y_trues_.append(y)

    def on_epoch_end(self, net):
        y_pred = torch.cat(self.y_preds_).argmax(dim=1)
        net.history.append(float((y_pred == torch.cat(self.y_trues_)).float().mean()))


class NeuralNet:
    def __init__(self, module, callbacks):
        self.module_ = module
        self.criterion_ = nn.CrossEntropyLoss()
        self.optimizer_ = torch.optim.SGD(module.parameters(), lr=0.05)
        self.callbacks, self.history = callbacks, []

    def notify(self, name, **kwargs):
        for cb in self.callbacks:
            getattr(cb, name)(self, **kwargs)

    def train_step(self, X, y):
        self.module_.train()
        y_pred = self.module_(X)
        loss = self.criterion_(y_pred, y)
        self.optimizer_.zero_grad()
        loss.backward()
        self.optimizer_.step()
        return {"loss": loss, "y_pred": y_pred}

    def validation_step(self, X, y):
        self.module_.eval()
        with torch.no_grad():
            y_pred = self.module_(X)
            return {"loss": self.criterion_(y_pred, y), "y_pred": y_pred}

    def run_single_epoch(self, batches, training):
        step_fn = self.train_step if training else self.validation_step
        for X, y in batches:
            step = step_fn(X, y)
            self.notify("on_batch_end", y=y, y_pred=step["y_pred"], training=training)

    def fit(self, train, valid, max_epochs):
        for _ in range(max_epochs):
            self.notify("on_epoch_begin")
            self.run_single_epoch(train, training=True)
            self.run_single_epoch(valid, training=False)
            self.notify("on_epoch_end")
        return self


def main():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 4))
    data = lambda n: [(torch.randn(32, 20), torch.randint(0, 4, (32,))) for _ in range(n)]  # noqa: E731
    net = NeuralNet(module, [EpochScoring()]).fit(data(12), data(12), max_epochs=3)
    print("valid acc", net.history)


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
