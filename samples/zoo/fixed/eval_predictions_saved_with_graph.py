"""`mtt eval` does not detach: memory builds up during evaluation and it crashes on large datasets.

Source: https://github.com/metatensor/metatrain/issues/702
Reported: the evaluation command ran the model with autograd on (it needs no gradients) and
kept the predictions for writing them out, so every batch's graph stayed alive and memory
grew until it crashed on large datasets; expected: constant memory.
Shape: an `evaluate()` helper collects predictions in a list for `torch.save` at the end,
called every 10 training steps (periodic evaluation with a prediction dump).
"""

import io

import torch
from torch import nn

ZOO = {"expect": None}


def evaluate(model: nn.Module, batches: list[torch.Tensor]) -> bytes:
    predictions = []
    with torch.no_grad():  # FIX: evaluation needs no graph
        for xb in batches:
            predictions.append(model(xb))
    buffer = io.BytesIO()
    torch.save([p.detach() for p in predictions], buffer)
    return buffer.getvalue()


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(32, 512), nn.Tanh(), nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 3)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    eval_batches = [torch.randn(128, 32) for _ in range(16)]
    for step in range(40):
        x, y = torch.randn(64, 32), torch.randn(64, 3)
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % 10 == 0:
            dump = evaluate(model, eval_batches)
            print(f"step {step + 1}: wrote {len(dump)} bytes of predictions")


if __name__ == "__main__":
    main()
