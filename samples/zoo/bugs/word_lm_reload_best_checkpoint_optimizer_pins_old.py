"""word_language_model: after `model = torch.load(f)` the optimizer still trains the old model.

Source: https://github.com/pytorch/examples/pull/1345
(word_language_model/main.py: "# Load the best saved model."
`with open(args.save, 'rb') as f: model = torch.load(f)`)
Reported: issue 12 measured the word-language-model example: once it reloads its best
checkpoint with `model = torch.load(f)`, the optimizer built on the first model keeps the
old parameters, their gradients and Adam state alive (56 MiB on a 14 MiB model), and every
later `optimizer.step()` updates those orphans while the reloaded model never learns.
Shape: module-level `model` rebound from a checkpoint file object inside the epoch loop
(reload-best-on-plateau); the optimizer is a local built once before the loop.
"""

import io
import math

import torch
from torch import nn

ZOO = {
    "expect": "stale-optimizer-params",
    "culprit": "optimizer",
    "line": "model = torch.load(f",
    "frameworks": [],
}


class RNNModel(nn.Module):
    def __init__(self, ntoken: int, ninp: int, nhid: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, batch_first=True)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.encoder(x))
        return self.decoder(out)


def evaluate(model: nn.Module, data: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(data[:, :-1])
        loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), data[:, 1:].reshape(-1)
        )
    model.train()
    return loss.item()


def main() -> None:
    torch.manual_seed(0)
    ntoken = 200
    train_data = torch.randint(0, ntoken, (64, 21))
    val_data = torch.randint(0, ntoken, (16, 21))
    model = RNNModel(ntoken, 64, 128)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    checkpoint = io.BytesIO()
    best_val_loss = math.inf
    for epoch in range(8):
        for i in range(0, train_data.size(0), 16):
            batch = train_data[i : i + 16]
            optimizer.zero_grad()
            logits = model(batch[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, ntoken), batch[:, 1:].reshape(-1))
            loss.backward()
            optimizer.step()
        val_loss = evaluate(model, val_data)
        if val_loss < best_val_loss:
            checkpoint.seek(0)
            checkpoint.truncate()
            torch.save(model, checkpoint)
            best_val_loss = val_loss
        else:
            for group in optimizer.param_groups:
                group["lr"] /= 4.0
            checkpoint.seek(0)
            f = checkpoint
            # BUG: new parameters; optimizer keeps the old ones
            model = torch.load(f, weights_only=False)
        print(f"epoch {epoch}: val loss {val_loss:.4f}")


if __name__ == "__main__":
    main()
