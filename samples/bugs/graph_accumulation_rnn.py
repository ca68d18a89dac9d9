"""Bug: an RNN's hidden state is carried from batch to batch without being detached.

    memwatch run samples/bugs/graph_accumulation_rnn.py

Truncated back-propagation through time must cut the graph at each batch boundary. Here
`hidden` keeps the history of every batch since the start, so each backward goes all
the way back (it gets slower every step) and every graph stays in memory. The
`retain_graph=True` was added to silence "Trying to backward through the graph a second
time" and the old-style `p.data` update keeps the in-place check quiet: both hide the
real bug. memwatch reports `graph-accumulation` for `hidden`; the fixed twin
(`graph_accumulation_rnn_fixed.py`) detaches the hidden state at the start of each batch.
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
    text = torch.randint(0, 16, (4, args.steps * args.seq + 1))
    lr = 0.1
    hidden = None
    for step in range(args.steps):
        tokens = text[:, step * args.seq : (step + 1) * args.seq]
        targets = text[:, step * args.seq + 1 : (step + 1) * args.seq + 1]
        logits, hidden = model(tokens, hidden)  # BUG: hidden carries every earlier graph
        loss = nn.functional.cross_entropy(logits.reshape(-1, 16), targets.reshape(-1))
        model.zero_grad()
        loss.backward(retain_graph=True)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
    print(f"last loss {loss.item():.3f}")


if __name__ == "__main__":
    main()
