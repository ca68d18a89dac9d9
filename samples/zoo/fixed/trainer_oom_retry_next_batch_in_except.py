"""OOM list out of range: recompute the gradients with a new batch after a CUDA OOM.

Source: https://github.com/OpenNMT/OpenNMT-py/pull/2550
(see also https://github.com/OpenNMT/OpenNMT-py/pull/2195)
Reported: a batch now and then ran out of memory a thousand steps into training; the PR
caught the error in the trainer's gradient-accumulation loop and recomputed the gradients
with another batch, and the maintainer warned it "will trigger exceptions" again: the
retry runs inside the `except` block, where the exception's traceback still holds the
failed attempt's frames and tensors.
Shape: `Trainer._gradient_accumulation()` wraps forward/loss/backward in
`try/except Exception as exc`, checks the traceback text for "out of memory", and retries
with the next batch from the iterator inside the handler.
"""

import traceback

import torch
from torch import nn

ZOO = {"expect": None}

CAPACITY = 12 * 2**20  # bytes of activations the "device" holds


class Trainer:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.optim = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.oom_count = 0

    def _forward_backward(self, batch: torch.Tensor) -> float:
        hidden = self.model[0](batch)
        act = torch.relu(hidden)
        if hidden.numel() * hidden.element_size() * 6 > CAPACITY:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 48.00 MiB")
        loss = self.model[2](act).pow(2).mean()
        loss.backward()
        return loss.item()

    def _gradient_accumulation(self, batches) -> float:
        self.optim.zero_grad()
        oom = False
        try:
            loss = self._forward_backward(next(batches))
        except Exception as exc:
            trace_content = traceback.format_exc()
            if "out of memory" not in trace_content:
                raise
            self.oom_count += 1
            print(f"cuda OOM - batch removed ({exc}); recomputing with a new batch")
            oom = True
        if oom:  # retry outside the handler: the failed attempt is released
            self.optim.zero_grad()
            torch.cuda.empty_cache()
            loss = self._forward_backward(next(batches))
        self.optim.step()
        return loss


def batch_stream():
    step = 0
    while True:
        n = 640 if step % 8 == 0 else 192
        step += 1
        yield torch.randn(n, 256)


def main() -> None:
    torch.manual_seed(0)
    trainer = Trainer(nn.Sequential(nn.Linear(256, 2048), nn.ReLU(), nn.Linear(2048, 1)))
    batches = batch_stream()
    for step in range(30):
        loss = trainer._gradient_accumulation(batches)
        if step % 10 == 0:
            print(f"step {step}: loss {loss:.4f} ooms {trainer.oom_count}")


if __name__ == "__main__":
    main()
