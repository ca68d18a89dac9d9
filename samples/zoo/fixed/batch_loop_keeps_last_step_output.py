"""Clear reference to training loss at the end of the train step.

Source: https://github.com/Lightning-AI/pytorch-lightning/pull/9336
Reported: the batch loop kept a reference to the last training step's result (the loss
with its graph, and the step's outputs) until the next step replaced it, so the previous
step's graph could not be freed before the next forward; the fix clears the reference at
the end of the step and tests that the loss can be garbage-collected before the next one.
Shape: a hand-written `BatchLoop` object stores `self.batch_output` (a dict with the
un-detached loss and the model's output) for callbacks to read, overwritten only by the
next step.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class BatchLoop:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer
        self.batch_output: dict[str, torch.Tensor] = {}

    def run(self, x: torch.Tensor, y: torch.Tensor) -> float:
        out = self.model(x)
        loss = nn.functional.mse_loss(out, y)
        self.optimizer.zero_grad()
        loss.backward(retain_graph=False)
        self.optimizer.step()
        self.batch_output = {"loss": loss.detach()}
        return loss.item()


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.Tanh(), nn.Linear(512, 512))
    loop = BatchLoop(model, torch.optim.Adam(model.parameters(), lr=1e-3))
    for step in range(40):
        x = torch.randn(128, 256)
        loss = loop.run(x, torch.randn(128, 512))
        if step % 10 == 0:
            print(f"step {step}: loss {loss:.4f}")


if __name__ == "__main__":
    main()
