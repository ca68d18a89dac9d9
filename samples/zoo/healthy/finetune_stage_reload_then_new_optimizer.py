"""Two-stage training: reload the best stage-1 model, then build a new optimizer for stage 2.

Pattern: https://PyTorch.org/tutorials/recipes/recipes/saving_and_loading_a_general_checkpoint.html
(initialise the model and optimizer, then load)
Reported: replacing the model object is fine when the optimizer is rebuilt on the new model
(fresh state for the fine-tuning stage, a new learning rate); the stage-1 optimizer and model
go away together. Looks like the `model = torch.load(f)` bug but nothing is stale.
Shape: module-level `model`/`optimizer` rebound together between stages; checkpoint in memory.
"""

import io

import torch
from torch import nn

ZOO = {"expect": None}


def run_stage(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int
) -> float:
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def main() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(256, 32), torch.randn(256, 1)
    model = nn.Sequential(nn.Linear(32, 512), nn.ReLU(), nn.Linear(512, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    checkpoint = io.BytesIO()
    print("stage 1:", run_stage(model, optimizer, x, y, 20))
    torch.save(model, checkpoint)
    checkpoint.seek(0)
    model = torch.load(checkpoint, weights_only=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    print("stage 2:", run_stage(model, optimizer, x, y, 20))


if __name__ == "__main__":
    main()
