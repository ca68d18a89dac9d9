"""Add torch.no_grad to the model calls of greedy generation during evaluation.

Source: https://github.com/allenai/catwalk/pull/161
Reported: the evaluation's `greedy_until` generation called the model without
`torch.no_grad()`; adding it greatly reduced memory use (a model that needed two GPUs then
fit on one). Every decoding step's forward kept its activations for a backward that never
came, and the logits collected for scoring kept all of them alive.
Shape: a seq2seq GRU trained with teacher forcing; every 10 steps a `greedy_until` helper
decodes a validation batch token by token, appending each step's logits to a Python list.
"""

import torch
from torch import nn

ZOO = {
    "expect": "graph-retained-in-inference",
    "frameworks": [],
}

VOCAB, DIM, BOS = 60, 48, 1


class Seq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.encoder = nn.GRU(DIM, DIM, batch_first=True)
        self.decoder = nn.GRU(DIM, DIM, batch_first=True)
        self.out = nn.Linear(DIM, VOCAB)

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(src))[1]

    def decode_step(self, tok: torch.Tensor, hidden: torch.Tensor):
        out, hidden = self.decoder(self.embed(tok), hidden)
        return self.out(out), hidden

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        out, _ = self.decoder(self.embed(tgt_in), self.encode(src))
        return self.out(out)


def greedy_until(model: Seq2Seq, src: torch.Tensor, max_len: int):
    # BUG: no torch.no_grad(): every step's forward keeps its graph
    hidden = model.encode(src)
    tok = torch.full((src.size(0), 1), BOS, dtype=torch.long)
    step_logits, tokens = [], []
    for _ in range(max_len):
        logits, hidden = model.decode_step(tok, hidden)
        step_logits.append(logits)
        tok = logits.argmax(-1)
        tokens.append(tok)
    return torch.cat(tokens, dim=1), torch.cat(step_logits, dim=1)


def main() -> None:
    torch.manual_seed(0)
    model = Seq2Seq()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    val_src = torch.randint(2, VOCAB, (64, 12))
    for step in range(60):
        src = torch.randint(2, VOCAB, (32, 12))
        tgt = src.flip(1)
        tgt_in = torch.cat([torch.full((32, 1), BOS), tgt[:, :-1]], dim=1)
        logits = model(src, tgt_in)
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % 10 == 0:
            model.eval()
            pred, _scores = greedy_until(model, val_src, max_len=12)
            acc = (pred == val_src.flip(1)).float().mean().item()
            print(f"step {step + 1}: loss {loss.item():.3f} val acc {acc:.3f}")
            model.train()


if __name__ == "__main__":
    main()
