"""Truncated BPTT done right: the LSTM state crosses chunks, detached at each chunk start.

Pattern: https://github.com/yunjey/pytorch-tutorial/issues/90
Looks risky: a tuple of state tensors lives across all steps and feeds every forward;
it is detached before each chunk, so each backward stops at the chunk boundary.
Shape: a language model loop over one long token stream, `states = detach(states)`.
"""

import torch
from torch import nn


class RNNLM(nn.Module):
    def __init__(self, vocab=50, embed=32, hidden=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.linear = nn.Linear(hidden, vocab)

    def forward(self, x, h):
        out, (h, c) = self.lstm(self.embed(x), h)
        return self.linear(out), (h, c)


def detach(states):
    return [state.detach() for state in states]


def main():
    torch.manual_seed(0)
    model = RNNLM()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    ids = torch.randint(0, 50, (8, 12 * 40 + 1))
    states = (torch.zeros(1, 8, 64), torch.zeros(1, 8, 64))
    for i in range(0, 12 * 40, 12):
        inputs, targets = ids[:, i : i + 12], ids[:, i + 1 : i + 13]
        states = detach(states)
        outputs, states = model(inputs, states)
        loss = nn.functional.cross_entropy(outputs.reshape(-1, 50), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
    print(f"loss {loss.item():.3f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
