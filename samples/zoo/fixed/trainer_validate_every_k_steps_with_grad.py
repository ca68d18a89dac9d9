"""torch.no_grad() not used in validate(): OpenNMT's Trainer validates with autograd on.

Source: https://github.com/OpenNMT/OpenNMT-py/issues/1141
Reported: `Trainer.validate()` ran the model without `torch.no_grad()` (forgotten in the
0.4 to 1.0 migration); the maintainers asked for the reduction in memory at validation.
Shape: a Trainer object whose train loop calls self.validate() every `valid_steps` steps;
statistics are kept in a Statistics object fed with `.item()`.
"""

import torch
from torch import nn


class Statistics:
    def __init__(self):
        self.loss, self.n_words = 0.0, 0

    def update(self, loss, n_words):
        self.loss += loss
        self.n_words += n_words


class Seq2Seq(nn.Module):
    def __init__(self, vocab=60, dim=48):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.encoder = nn.GRU(dim, dim, batch_first=True)
        self.generator = nn.Linear(dim, vocab)

    def forward(self, src):
        out, _ = self.encoder(self.embed(src))
        return self.generator(out)


class Trainer:
    def __init__(self, model, optim, valid_steps):
        self.model, self.optim, self.valid_steps = model, optim, valid_steps
        self.criterion = nn.CrossEntropyLoss(reduction="sum")

    def validate(self, valid_iter):
        self.model.eval()
        stats = Statistics()
        with torch.no_grad():
            for src, tgt in valid_iter:
                outputs = self.model(src)
                loss = self.criterion(outputs.flatten(0, 1), tgt.flatten())
                stats.update(loss.item(), tgt.numel())
        self.model.train()
        return stats

    def train(self, train_iter, valid_iter):
        for step, (src, tgt) in enumerate(train_iter, 1):
            outputs = self.model(src)
            loss = self.criterion(outputs.flatten(0, 1), tgt.flatten()) / tgt.numel()
            self.optim.zero_grad()
            loss.backward()
            self.optim.step()
            if step % self.valid_steps == 0:
                stats = self.validate(valid_iter)
                print(
                    f"step {step}: valid ppl",
                    f"{torch.exp(torch.tensor(stats.loss / stats.n_words)):.2f}",
                )


def main():
    torch.manual_seed(0)
    model = Seq2Seq()
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=1e-3), valid_steps=10)
    batch = lambda: (torch.randint(0, 60, (8, 20)), torch.randint(0, 60, (8, 20)))  # noqa: E731
    trainer.train([batch() for _ in range(40)], [batch() for _ in range(6)])


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
