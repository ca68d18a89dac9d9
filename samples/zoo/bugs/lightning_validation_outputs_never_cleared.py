"""Lightning 2: validation_step outputs kept in `self.validation_step_outputs` are never cleared.

Source: https://github.com/Lightning-AI/pytorch-lightning/discussions/17182
Reported: after Lightning 2 removed the `outputs` argument of the epoch-end hooks, the
migration is to append to `self.validation_step_outputs` and call `.clear()  # free memory`
in `on_validation_epoch_end`. Without that clear, every validation run adds its batches'
predictions to the list and memory grows at each validation.
Shape: LightningModule list attribute filled in `validation_step` (under Lightning's no_grad),
read in `on_validation_epoch_end`; validation every 10 training batches (every-k-steps).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {
    "expect": "memory-growth",
    "culprit": "validation_step_outputs",
    "line": "self.validation_step_outputs.append(",
    "frameworks": ["lightning"],
}


class LitRegressor(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256))
        self.validation_step_outputs: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        preds = self.net(x)
        self.validation_step_outputs.append(preds)
        return nn.functional.mse_loss(preds, y)

    def on_validation_epoch_end(self) -> None:
        all_preds = torch.cat(self.validation_step_outputs)
        self.log("val_pred_norm", all_preds.norm())
        # BUG: self.validation_step_outputs is never cleared

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main() -> None:
    torch.manual_seed(0)
    train = TensorDataset(torch.randn(3200, 32), torch.randn(3200, 256))
    val = TensorDataset(torch.randn(1024, 32), torch.randn(1024, 256))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        val_check_interval=10,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LitRegressor(), DataLoader(train, batch_size=64), DataLoader(val, batch_size=128))


if __name__ == "__main__":
    main()
