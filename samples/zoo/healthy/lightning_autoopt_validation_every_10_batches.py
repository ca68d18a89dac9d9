"""Lightning with automatic optimization and validation every few batches, no accumulation.

Pattern: https://lightning.ai/docs/pytorch/2.1.2/_sources/common/optimization.rst.txt
(accumulate_grad_batches: https://lightning.ai/docs/pytorch/2.5.1/api/lightning.pytorch.trainer.trainer.Trainer.html)
Reported: issue 12 measured a false ERROR on a correct Lightning program: "`trainer.zero_grad()`
wipes the gradients ... the model does not learn". Lightning runs `zero_grad`, `backward` and
`step` from a closure, skips `step` and `zero_grad` on accumulating batches and runs
validation (under no_grad, eval mode) between steps; none of that is a bug.
Shape: LightningModule with `training_step`/`validation_step`/`configure_optimizers`,
one optimizer step per batch, `val_check_interval=10`, epoch-end outputs detached and cleared
(the twin of lightning_autoopt_validation_grad_accumulation without accumulation).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {"expect": None, "frameworks": ["lightning"]}


class LitClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(32, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 4)
        )
        self.val_losses: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.val_losses.append(loss.detach())
        return loss

    def on_validation_epoch_end(self) -> None:
        self.log("val_loss", torch.stack(self.val_losses).mean())
        self.val_losses.clear()

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3)
        return {
            "optimizer": optimizer,
            "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=10),
        }


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(2560, 32)
    y = (x[:, :4].argmax(dim=1)).long()
    train = TensorDataset(x[:2048], y[:2048])
    val = TensorDataset(x[2048:], y[2048:])
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        accumulate_grad_batches=1,
        val_check_interval=10,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(
        LitClassifier(),
        DataLoader(train, batch_size=32, shuffle=True),
        DataLoader(val, batch_size=128),
    )


if __name__ == "__main__":
    main()
