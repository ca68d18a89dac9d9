"""Lightning manual optimization with gradient accumulation every 4 batches.

Pattern: https://lightning.ai/docs/pytorch/stable/model/manual_optimization.html
(section "Gradient accumulation")
Reported: with `automatic_optimization = False` the LightningModule calls
`self.manual_backward(loss / N)` every batch and `opt.step()` / `opt.zero_grad()` only every
N batches, as the docs show. Looks risky (gradients left in place across batches, zero_grad
after step, backward without a step) but it is the documented accumulation.
Shape: `training_step` with `self.optimizers()`, `self.manual_backward`, a
`(batch_idx + 1) % N` step, `self.log` of the detached loss; validation every epoch.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {"expect": None, "frameworks": ["lightning"]}

N = 4


class LitModel(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 4))

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.manual_backward(loss / N)
        if (batch_idx + 1) % N == 0:
            opt.step()
            opt.zero_grad()
        self.log("train_loss", loss.detach(), prog_bar=False)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def main() -> None:
    torch.manual_seed(0)
    train = TensorDataset(torch.randn(1280, 32), torch.randint(0, 4, (1280,)))
    val = TensorDataset(torch.randn(256, 32), torch.randint(0, 4, (256,)))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LitModel(), DataLoader(train, batch_size=32), DataLoader(val, batch_size=64))


if __name__ == "__main__":
    main()
