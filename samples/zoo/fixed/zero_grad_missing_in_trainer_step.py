"""Trainer: `zero_grad` was left out after each optimizer step (LoRA fine-tuning).

Source: https://github.com/tenstorrent/tt-blacksmith/pull/711
(also https://github.com/IDEA-Research/DN-DETR/issues/19)
Reported: in the Trainer class used for LoRA LLM training, the optimizer's gradients were
never zeroed after each optimizer step, so every step used the sum of all past gradients.
Shape: a Trainer class with `train_step()` doing forward/backward/clip/step, the optimizer
held in `self.optimizer`, a LoRA-style adapter over a frozen base layer.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class LoRALinear(nn.Module):
    def __init__(self, d_in: int, d_out: int, rank: int = 8) -> None:
        super().__init__()
        self.base = nn.Linear(d_in, d_out)
        self.base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.randn(rank, d_in) * 0.01)
        self.lora_b = nn.Parameter(torch.zeros(d_out, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + x @ self.lora_a.T @ self.lora_b.T


class Trainer:
    def __init__(self, model: nn.Module, lr: float) -> None:
        self.model = model
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=lr
        )

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        loss = nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # FIX
        return loss.item()


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(LoRALinear(128, 256), nn.ReLU(), LoRALinear(256, 32))
    trainer = Trainer(model, lr=1e-3)
    for step in range(40):
        loss = trainer.train_step(torch.randn(32, 128), torch.randint(0, 32, (32,)))
        if step % 10 == 0:
            print(f"step {step}: loss {loss:.4f}")


if __name__ == "__main__":
    main()
