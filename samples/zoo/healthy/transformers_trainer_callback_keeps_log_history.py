"""transformers Trainer with a TrainerCallback that keeps every logged value for plotting.

Pattern: https://huggingface.co/docs/transformers/main_classes/callback
Reported: a callback's `on_log` receives the `logs` dict the Trainer built from the training
loss (which the Trainer accumulates detached and converts with `.item()` when it logs); a
callback keeping every logs dict keeps plain floats. Looks risky (a list on a callback that
grows every logging step through the whole run, on top of `state.log_history`).
Shape: a tiny BertForSequenceClassification from a config, `Trainer` with
`logging_steps=2`, a `LossHistory(TrainerCallback)` appending `dict(logs)` in `on_log`.
"""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

ZOO = {"expect": None, "frameworks": ["transformers"]}


class LossHistory(TrainerCallback):
    def __init__(self) -> None:
        self.history: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.history.append(dict(logs))


class ClassificationDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 500, (n, 24), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i, 0] % 3}


def main() -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=500,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    history = LossHistory()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=16,
            max_steps=30,
            logging_steps=2,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=BertForSequenceClassification(config),
            args=args,
            train_dataset=ClassificationDataset(480, 0),
            callbacks=[history],
        )
        trainer.train()
    losses = [h["loss"] for h in history.history if "loss" in h]
    print(f"{len(losses)} logged losses, last {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
