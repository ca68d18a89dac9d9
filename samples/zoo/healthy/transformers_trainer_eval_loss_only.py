"""transformers Trainer on a tiny GPT-2 built from a config, evaluating the loss only.

Pattern: https://huggingface.co/docs/transformers/trainer_recipes  ("memory-efficient evaluation")
Reported: without `compute_metrics` the Trainer's evaluation keeps only the per-batch losses,
so evaluation memory stays flat; looks risky (framework-driven train/eval/zero_grad, logits
of a language model) but is correct.
Shape: `Trainer(model, args, train_dataset, eval_dataset)`, evaluation every 10 steps.
"""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

ZOO = {"expect": None, "frameworks": ["transformers"]}


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, seq_len: int, vocab: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, seq_len), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main() -> None:
    torch.manual_seed(0)
    vocab = 2000
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    )
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=8,
            gradient_accumulation_steps=2,
            max_steps=20,
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
            train_dataset=TokenDataset(320, 32, vocab, 0),
            eval_dataset=TokenDataset(96, 32, vocab, 1),
        )
        trainer.train()
        print(trainer.evaluate())


if __name__ == "__main__":
    main()
