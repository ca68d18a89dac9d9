"""Lightning: OOM when collecting training_step outputs for the epoch end.

Source: https://github.com/Lightning-AI/pytorch-lightning/issues/15514
(see also https://github.com/ashleve/lightning-hydra-template/issues/458)
Reported: overriding `training_epoch_end` made Lightning keep every batch's output for the
whole epoch and training ran out of memory; Lightning 2 removed the hook and asks users to
keep what they need in an attribute themselves. Written that way with the loss itself
appended, every training step's loss and its whole autograd graph stay alive until the
epoch ends.
Shape: a LightningModule attribute `self.training_step_outputs` (list of dicts), filled in
`training_step`, cleared in `on_train_epoch_end`; Lightning's automatic optimization.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {
    "expect": "graph-accumulation",
    "also_ok": ["memory-growth"],
    "culprit": "training_step_outputs",
    "line": "self.training_step_outputs.append(",
    "frameworks": ["lightning"],
}


class LitClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
        self.training_step_outputs: list[dict[str, torch.Tensor]] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        # BUG: keeps the loss with its graph
        self.training_step_outputs.append({"loss": loss, "y": y})
        return loss

    def on_train_epoch_end(self) -> None:
        epoch_mean = torch.stack([o["loss"] for o in self.training_step_outputs]).mean()
        self.log("train_loss_epoch", epoch_mean)
        self.training_step_outputs.clear()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def main() -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(2560, 64), torch.randint(0, 10, (2560,)))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LitClassifier(), DataLoader(data, batch_size=64))


if __name__ == "__main__":
    main()
