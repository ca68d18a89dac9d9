"""Storing the loss of each batch in the Trainer causes out of memory.

Source: https://github.com/RUCAIBox/RecBole/pull/307
Reported: the Trainer kept the loss of every batch for its epoch summary and training ran
out of memory; the losses still carried their autograd graphs; the fix stores
`loss.item()`.
Shape: the list is a CLASS attribute (`losses: list = []` in the class body), so
`self.losses.append(loss)` mutates one list shared by every Trainer instance; it is never
cleared (a new Trainer per run does not help).
"""

import torch
from torch import nn

ZOO = {
    "expect": "graph-accumulation",
    "also_ok": ["memory-growth"],
    "culprit": "losses",
    "line": "self.losses.append(loss)",
    "frameworks": [],
}


class RecModel(nn.Module):
    def __init__(self, n_users: int = 300, n_items: int = 500, dim: int = 32) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)

    def calculate_loss(self, users, pos, neg) -> torch.Tensor:
        u = self.user(users)
        pos_score = (u * self.item(pos)).sum(-1)
        neg_score = (u * self.item(neg)).sum(-1)
        return -nn.functional.logsigmoid(pos_score - neg_score).mean()


class Trainer:
    losses: list = []  # noqa: RUF012  (class attribute: shared by all instances)

    def __init__(self, model: RecModel) -> None:
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def _train_epoch(self, n_batches: int) -> float:
        for _ in range(n_batches):
            users = torch.randint(0, 300, (256,))
            pos, neg = torch.randint(0, 500, (256,)), torch.randint(0, 500, (256,))
            loss = self.model.calculate_loss(users, pos, neg)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.losses.append(loss)  # BUG: keeps every batch's graph
        return float(sum(self.losses[-n_batches:])) / n_batches

    def fit(self, epochs: int) -> None:
        for epoch in range(epochs):
            print(f"epoch {epoch}: train loss {self._train_epoch(10):.4f}")


def main() -> None:
    torch.manual_seed(0)
    for _run in range(2):  # e.g. two hyper-parameter settings, a Trainer each
        Trainer(RecModel()).fit(epochs=3)


if __name__ == "__main__":
    main()
