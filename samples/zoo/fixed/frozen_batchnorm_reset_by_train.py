"""freeze() BatchNorm eval mode is reset by the next model.train().

Source: https://github.com/pgniewko/gt-pyg/issues/112
(see also https://github.com/pytorch/pytorch/issues/86590)
Reported: `freeze()` set `requires_grad=False` on the encoder and put its BatchNorm modules
in eval mode once; every epoch starts with `model.train()`, which recurses into every
submodule, so the "frozen" BatchNorm is back in training mode: its running statistics keep
being overwritten by the fine-tuning data and it normalises with batch statistics, while
the frozen flag still says frozen.
Shape: a model with a `freeze_encoder()` method, an epoch loop calling `model.train()` at
its top, only the head in the optimizer.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class GraphTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(32, 64),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.BatchNorm1d(64),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, 1)
        self.frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def freeze_encoder(self) -> None:
        for p in self.encoder.parameters():
            p.requires_grad = False
        for m in self.encoder.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.eval()
        self.frozen = True

    def train(self, mode: bool = True) -> "GraphTransformer":
        super().train(mode)
        if self.frozen:
            for m in self.encoder.modules():
                if isinstance(m, nn.BatchNorm1d):
                    m.eval()
        return self


def main() -> None:
    torch.manual_seed(0)
    model = GraphTransformer()
    model.freeze_encoder()
    optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-3)
    for epoch in range(5):
        model.train()
        for _ in range(10):
            x = torch.randn(32, 32) * 3 + 1  # fine-tuning data, other statistics
            y = x[:, :1]
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        bn = model.encoder[1]
        running_mean = bn.running_mean.mean().item()
        print(f"epoch {epoch}: loss {loss.item():.3f} running_mean {running_mean:.3f}")


if __name__ == "__main__":
    main()
