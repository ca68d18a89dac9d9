"""Predictions from BertForSequenceClassification keep changing across runs.

Source: https://github.com/huggingface/transformers/issues/432
Reported: after fine-tuning with run_classifier.py, the logits for the same input changed
every time prediction ran; the maintainer's answer: "You probably forgot to deactivate the
DropOut modules with `model.eval()`".
Shape: a tiny BertForSequenceClassification built from a BertConfig (no download), a plain
fine-tuning loop, and a `predict()` helper run under `torch.no_grad()` every 5 steps but
with the model left in training mode (hidden and attention dropout active).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import BertConfig, BertForSequenceClassification

ZOO = {
    "expect": "eval-mode-missing",
    "culprit": "model",
    "frameworks": ["transformers"],
}


def predict(model, input_ids, attention_mask) -> torch.Tensor:
    # BUG: no model.eval(): dropout is still active while predicting
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    return logits.argmax(-1)


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
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dev_ids = torch.randint(0, 500, (32, 24))
    dev_mask = torch.ones_like(dev_ids)
    model.train()
    for step in range(20):
        input_ids = torch.randint(0, 500, (16, 24))
        labels = input_ids[:, 0] % 3
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if (step + 1) % 5 == 0:
            preds = predict(model, dev_ids, dev_mask)
            acc = (preds == dev_ids[:, 0] % 3).float().mean().item()
            print(f"step {step + 1}: loss {out.loss.item():.3f} dev acc {acc:.3f}")


if __name__ == "__main__":
    main()
