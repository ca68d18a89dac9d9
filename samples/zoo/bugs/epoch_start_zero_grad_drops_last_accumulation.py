"""Double zero_grad call messing up gradient accumulation (end-of-epoch batches discarded).

Source: https://github.com/ultralytics/ultralytics/pull/11217
Reported: `optimizer.zero_grad()` was called at the start of every epoch as well as in
`optimizer_step()`; since the step only runs every `accumulate` batches, the epoch-start
zero_grad threw away the gradients of the last batches of each epoch (120 % 32 = 24 batches
backpropagated for nothing every epoch). The fix removes the epoch-start call.
Shape: a BaseTrainer-like class; `self.accumulate` batches per optimizer step,
`ni - last_opt_step >= accumulate` decides the step, epoch length not a multiple of it.
"""

import torch
from torch import nn

ZOO = {
    "expect": "grad-reset-before-step",
    "line": "self.optimizer.zero_grad()",
    "frameworks": [],
}


class BaseTrainer:
    def __init__(self, model: nn.Module, nb: int, accumulate: int) -> None:
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        self.nb = nb
        self.accumulate = accumulate

    def optimizer_step(self) -> None:
        nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
        self.optimizer.step()
        self.optimizer.zero_grad()

    def _do_train(self, epochs: int) -> None:
        last_opt_step = -1
        for epoch in range(epochs):
            self.model.train()
            self.optimizer.zero_grad()  # BUG: drops the last batches' accumulated grads
            for i in range(self.nb):
                ni = i + self.nb * epoch
                imgs = torch.randn(8, 3, 16, 16)
                cls = torch.randint(0, 5, (8,))
                loss = nn.functional.cross_entropy(self.model(imgs), cls)
                loss.backward()
                if ni - last_opt_step >= self.accumulate:
                    self.optimizer_step()
                    last_opt_step = ni
            print(f"epoch {epoch}: loss {loss.item():.4f}")


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    BaseTrainer(model, nb=10, accumulate=4)._do_train(epochs=6)


if __name__ == "__main__":
    main()
