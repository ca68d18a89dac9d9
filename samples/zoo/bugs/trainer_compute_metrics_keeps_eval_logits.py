"""transformers Trainer accumulates every evaluation batch's logits when `compute_metrics` is set.

Source: https://github.com/huggingface/transformers/issues/12878
(see also https://github.com/huggingface/transformers/issues/15466)
Reported: with `compute_metrics`, `Trainer.evaluate` concatenates the logits of every
evaluation batch (`preds_host = nested_concat(preds_host, logits)`) and keeps them until the
evaluation ends: for a language model that is eval size x sequence length x vocabulary, which
runs out of memory on a reasonable validation set. The maintainers added
`preprocess_logits_for_metrics` so the logits can be reduced (e.g. argmax) before caching.
Shape: the framework holds the tensors (`Trainer.evaluation_loop` locals), fed by the user's
`compute_metrics` callback; evaluation runs every 10 training steps.
"""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

ZOO = {
    "expect": "memory-growth",
    "culprit": "logits",
    "frameworks": ["transformers"],
}


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, seq_len: int, vocab: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, seq_len), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def compute_metrics(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred
    preds = np.asarray(logits).argmax(-1)
    return {"accuracy": float((preds[:, :-1] == labels[:, 1:]).mean())}


def main() -> None:
    torch.manual_seed(0)
    vocab = 2000
    config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(config)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=8,
            max_steps=30,
            eval_strategy="steps",
            eval_steps=10,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            logging_strategy="no",
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=TokenDataset(240, 32, vocab, 0),
            eval_dataset=TokenDataset(96, 32, vocab, 1),
            compute_metrics=compute_metrics,  # BUG: every eval batch's logits kept until the end
        )
        trainer.train()
        print(trainer.evaluate())


if __name__ == "__main__":
    main()
