"""[cudnn] cudnn benchmark on by default: re-benchmarking when inputs vary in size.

Source: https://github.com/hpcaitech/ColossalAI/pull/1063  (fixes issue #1058)
Reported: the framework's `launch()` turned `torch.backends.cudnn.benchmark` on by default,
so training with inputs of varying sizes repeatedly ran cuDNN's benchmarking; the fix sets
it to False by default and lets users opt in with `cudnn_benchmark = True` in `config.py`.
Shape: a `launch(config)` helper reads `config.get("cudnn_benchmark", True)`; a Conv1d text
classifier gets batches padded to the longest sentence of the batch, so the sequence length
changes from batch to batch.
"""

import torch
from torch import nn

ZOO = {
    "expect": "cudnn-benchmark-dynamic-shapes",
    "culprit": "model",
    "frameworks": [],
}


def launch(config: dict) -> None:
    torch.manual_seed(config.get("seed", 0))
    # BUG: benchmark mode on by default, whatever the input shapes
    torch.backends.cudnn.benchmark = config.get("cudnn_benchmark", True)


class TextCNN(nn.Module):
    def __init__(self, vocab: int = 1000, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, 64, kernel_size=3, padding=1)
        self.fc = nn.Linear(64, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(self.embed(tokens).transpose(1, 2)))
        return self.fc(h.max(dim=2).values)


def main() -> None:
    launch({"seed": 0})
    model = TextCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(40):
        max_len = int(torch.randint(8, 64, (1,), generator=g))  # longest sentence in batch
        tokens = torch.randint(1, 1000, (16, max_len), generator=g)
        labels = torch.randint(0, 2, (16,), generator=g)
        loss = nn.functional.cross_entropy(model(tokens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step}: len {max_len} loss {loss.item():.4f}")
    torch.backends.cudnn.benchmark = False


if __name__ == "__main__":
    main()
