"""Fixing early_stopping: the callback was passed loss tensors instead of floats.

Source: https://github.com/facebookresearch/EGG/pull/13
Reported: the trainer handed the train/validation loss to the `EarlyStopper` callback as
tensors, which the callback stored in its per-epoch stats; the fix passes floats. The mean
loss is summed over the epoch's batches, so every stored tensor carries that whole epoch's
autograd graph, and the callback keeps one more epoch of graphs after every epoch.
Shape: a Trainer with a list of callbacks (`on_epoch_end(loss, logs)`); the `EarlyStopper`
callback appends `(loss, logs)` to `self.train_stats` and compares against its best.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class Callback:
    def on_epoch_end(self, loss, logs: dict) -> None:
        pass


class EarlyStopper(Callback):
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.train_stats: list = []

    def on_epoch_end(self, loss, logs: dict) -> None:
        self.train_stats.append((loss, logs))

    def should_stop(self) -> bool:
        return bool(self.train_stats) and float(self.train_stats[-1][0]) < self.threshold


class Trainer:
    def __init__(self, game: nn.Module, optimizer, callbacks: list[Callback]) -> None:
        self.game = game
        self.optimizer = optimizer
        self.callbacks = callbacks

    def train_epoch(self, n_batches: int):
        mean_loss = 0.0
        for _ in range(n_batches):
            sender_input = torch.randn(16, 32)
            out = self.game(sender_input)
            optimized_loss = nn.functional.mse_loss(out, sender_input)
            self.optimizer.zero_grad()
            optimized_loss.backward()
            self.optimizer.step()
            mean_loss += optimized_loss.item()
        return float(mean_loss) / n_batches, {"n_batches": n_batches}

    def train(self, n_epochs: int) -> None:
        for epoch in range(n_epochs):
            train_loss, logs = self.train_epoch(4)
            for callback in self.callbacks:
                callback.on_epoch_end(train_loss, logs)
            if epoch % 5 == 0:
                print(f"epoch {epoch}: loss {float(train_loss):.4f}")
            if any(isinstance(c, EarlyStopper) and c.should_stop() for c in self.callbacks):
                break


def main() -> None:
    torch.manual_seed(0)
    game = nn.Sequential(nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 32))
    trainer = Trainer(game, torch.optim.Adam(game.parameters(), lr=1e-3), [EarlyStopper(1e-4)])
    trainer.train(n_epochs=20)


if __name__ == "__main__":
    main()
