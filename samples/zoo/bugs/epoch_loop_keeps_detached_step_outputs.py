"""Memory (CPU and GPU) leaks during the 1st epoch: every step's outputs kept for the epoch end.

Source: https://github.com/Lightning-AI/pytorch-lightning/issues/1510
Reported: memory rose throughout the first epoch; the training loop appended every train
step's output to a list for the epoch-end hook. The maintainers "detach everything", but as
the reporter pointed out the detached tensors are still on the GPU: with long epochs or big
outputs (logits) the list alone runs the device out of memory.
Shape: a hand-written epoch loop class keeps `self.epoch_output`, a list of dicts of
detached step outputs (loss and the full logits), consumed only by `on_epoch_end`; the
epoch is long (all the steps of this run).
"""

import torch
from torch import nn

ZOO = {
    "expect": "memory-growth",
    "culprit": "epoch_output",
    "line": "self.epoch_output.append(",
    "frameworks": [],
}


class TrainLoop:
    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer
        self.epoch_output: list[dict[str, torch.Tensor]] = []

    def training_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.model(x)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        return {"loss": loss, "logits": logits}

    def run_epoch(self, n_batches: int) -> None:
        for i in range(n_batches):
            x = torch.randn(16, 32, 64)
            y = torch.randint(0, 500, (16, 32))
            output = self.training_step(x, y)
            self.optimizer.zero_grad()
            output["loss"].backward()
            self.optimizer.step()
            # BUG: detached, but every step's logits are kept until the epoch ends
            self.epoch_output.append({k: v.detach() for k, v in output.items()})
            if i % 20 == 0:
                print(f"batch {i}: loss {output['loss'].item():.4f}")
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        losses = torch.stack([o["loss"] for o in self.epoch_output])
        print(f"epoch mean loss {losses.mean().item():.4f}")
        self.epoch_output.clear()


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 500))
    TrainLoop(model, torch.optim.SGD(model.parameters(), lr=0.05)).run_epoch(60)


if __name__ == "__main__":
    main()
