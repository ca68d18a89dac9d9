"""Fixed twin of graph_accumulation_rnn.py: the hidden state is detached at each batch.

    memwatch run samples/bugs/graph_accumulation_rnn_fixed.py

`hidden = hidden.detach()` at the start of each batch keeps the *values* of the state
(the model still sees the whole sequence) but cuts its history, so backward stops at the
batch boundary, no `retain_graph` is needed, and each batch's graph is freed.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


class CharModel(nn.Module):
    def __init__(self, vocab: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(
        self, tokens: torch.Tensor, hidden: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, hidden = self.rnn(self.embed(tokens), hidden)
        return self.head(out), hidden


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seq", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    model = CharModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    text = torch.randint(0, 16, (4, args.steps * args.seq + 1))
    hidden = None
    for step in range(args.steps):
        if hidden is not None:
            hidden = hidden.detach()  # keep the state's values, drop its history
        tokens = text[:, step * args.seq : (step + 1) * args.seq]
        targets = text[:, step * args.seq + 1 : (step + 1) * args.seq + 1]
        logits, hidden = model(tokens, hidden)
        loss = nn.functional.cross_entropy(logits.reshape(-1, 16), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"last loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
