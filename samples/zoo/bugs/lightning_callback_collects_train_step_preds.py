"""Lightning: a metrics callback collecting training_step outputs in on_train_batch_end.

Source: https://github.com/Lightning-AI/pytorch-lightning/issues/8583
(see also https://github.com/Lightning-AI/pytorch-lightning/issues/5517)
Reported: the user returned a dictionary from the step and implemented callbacks overriding
`on_*_batch_end` and `on_*_epoch_end` "to compute the metrics and log outputs to an external
service", and memory leaked; keeping the step outputs for an entire epoch is
memory-intensive. In training, Lightning detaches only the `loss` it hands to callbacks:
the other keys of the returned dict still carry their autograd graph.
Shape: `training_step` returns `{"loss": loss, "preds": logits}`; a `Callback` appends
`outputs["preds"]` to `self.preds` every batch and computes an epoch metric at epoch end.
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
    "culprit": "preds",
    "line": 'self.preds.append(outputs["preds"])',
    "frameworks": ["lightning"],
}


class EpochMetrics(L.Callback):
    def __init__(self) -> None:
        self.preds: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.preds.append(outputs["preds"])  # BUG: the logits keep their graph
        self.targets.append(batch[1])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        preds = torch.cat(self.preds).argmax(1)
        acc = (preds == torch.cat(self.targets)).float().mean().item()
        print(f"epoch {trainer.current_epoch}: train acc {acc:.3f}")
        self.preds.clear()
        self.targets.clear()


class LitClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        return {"loss": nn.functional.cross_entropy(logits, y), "preds": logits}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def main() -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(1280, 64), torch.randint(0, 10, (1280,)))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[EpochMetrics()],
    )
    trainer.fit(LitClassifier(), DataLoader(data, batch_size=64))


if __name__ == "__main__":
    main()
