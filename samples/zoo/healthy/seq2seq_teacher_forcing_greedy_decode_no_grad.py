"""Seq2seq GRU: teacher forcing in training, greedy decoding under no_grad every 10 steps.

Pattern: https://pytorch.org/tutorials/intermediate/seq2seq_translation_tutorial.html
Reported: the tutorial's decoder loop appends every step's decoder output to a list and
concatenates them for the loss; evaluation decodes greedily token by token, feeding back
its own predictions, inside `torch.no_grad()`. Looks risky (Python lists of per-step
outputs and hidden states, a decoding loop between training steps) but every list lives
for one step and evaluation builds no graph.
Shape: `decoder_outputs` list of per-token logits in training (teacher forcing), a
`greedy_decode()` helper under `@torch.no_grad()` with `model.eval()` around it.
"""

import torch
from torch import nn

ZOO = {"expect": None}

VOCAB, DIM, BOS = 60, 48, 1


class Seq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.encoder = nn.GRU(DIM, DIM, batch_first=True)
        self.cell = nn.GRUCell(DIM, DIM)
        self.out = nn.Linear(DIM, VOCAB)
        self.dropout = nn.Dropout(0.1)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(src))[1][0]
        tok = torch.full((src.size(0),), BOS, dtype=torch.long)
        decoder_outputs = []
        for t in range(tgt.size(1)):
            hidden = self.cell(self.dropout(self.embed(tok)), hidden)
            decoder_outputs.append(self.out(hidden))
            tok = tgt[:, t]  # teacher forcing
        return torch.stack(decoder_outputs, dim=1)


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: torch.Tensor, max_len: int) -> torch.Tensor:
    hidden = model.encoder(model.embed(src))[1][0]
    tok = torch.full((src.size(0),), BOS, dtype=torch.long)
    tokens = []
    for _ in range(max_len):
        hidden = model.cell(model.embed(tok), hidden)
        tok = model.out(hidden).argmax(-1)
        tokens.append(tok)
    return torch.stack(tokens, dim=1)


def main() -> None:
    torch.manual_seed(0)
    model = Seq2Seq()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    val_src = torch.randint(2, VOCAB, (64, 10))
    for step in range(1, 51):
        src = torch.randint(2, VOCAB, (32, 10))
        tgt = src.flip(1)
        logits = model(src, tgt)
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            model.eval()
            pred = greedy_decode(model, val_src, max_len=10)
            model.train()
            acc = (pred == val_src.flip(1)).float().mean().item()
            print(f"step {step}: loss {loss.item():.3f} val acc {acc:.3f}")


if __name__ == "__main__":
    main()
