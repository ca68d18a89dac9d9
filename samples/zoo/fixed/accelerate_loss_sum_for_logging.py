"""Memory leak in the fine-tuning loop: `loss_sum += loss` between two reports.

Source: https://github.com/ray-project/ray/pull/40940
Reported: memory grew until the worker died in the LLM fine-tuning template
(`finetune_hf_llm.py`, accelerate); the loop added every step's loss to `loss_sum` for the
average it reports, keeping each step's graph; `loss.item()` (or `.detach()`) fixed it.
Shape: an accelerate loop (`accelerator.prepare`, `accelerator.accumulate`,
`accelerator.backward`) with a running `loss_sum` reported (and reset) once per epoch.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {"expect": None, "frameworks": ["accelerate"]}


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 200, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.block = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, dim))
        self.head = nn.Linear(dim, vocab)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids)
        logits = self.head(h + self.block(h))
        return nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), input_ids[:, 1:].reshape(-1)
        )


def main() -> None:
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model = TinyLM()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = DataLoader(TensorDataset(torch.randint(0, 200, (480, 24))), batch_size=8)
    model, optimizer, data = accelerator.prepare(model, optimizer, data)
    for epoch in range(1):
        loss_sum = torch.tensor(0.0)
        for (input_ids,) in data:
            with accelerator.accumulate(model):
                loss = model(input_ids)
                loss_sum += loss.detach()
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
        print(f"epoch {epoch}: mean loss {float(loss_sum) / len(data):.4f}")


if __name__ == "__main__":
    main()
