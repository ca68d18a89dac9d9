"""Checkpointing every k steps with `state_dict()` (model + optimizer), nothing kept in memory.

Pattern: https://PyTorch.org/tutorials/recipes/recipes/saving_and_loading_a_general_checkpoint.html
Reported: saving a general checkpoint means serialising the model's and the optimizer's
state_dict (plus epoch and loss) every so often; `state_dict()` returns references, so
nothing is copied or kept between saves. The writes are periodic (every 10 steps) and look
like every-k-steps growth, but memory returns to its level after each save.
Shape: a `save_checkpoint()` helper writing to an in-memory buffer that is overwritten.
"""

import io

import torch
from torch import nn

ZOO = {"expect": None}


def save_checkpoint(
    buffer: io.BytesIO, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, loss: float
) -> int:
    buffer.seek(0)
    buffer.truncate()
    torch.save(
        {
            "step": step,
            "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
            "loss": loss,
        },
        buffer,
    )
    return buffer.tell()


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 1)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    buffer = io.BytesIO()
    for step in range(40):
        x, y = torch.randn(64, 64), torch.randn(64, 1)
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % 10 == 0:
            size = save_checkpoint(buffer, step, model, optimizer, loss.item())
            print(f"step {step + 1}: checkpoint {size} bytes")


if __name__ == "__main__":
    main()
