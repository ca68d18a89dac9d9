"""Inconsistent recovery from CUDA OOMs while searching the batch size.

Source: https://github.com/pytorch/pytorch/issues/18853
Reported: a script doubled the batch size until it hit an OOM, then ran "a tiny batch to
catch up" inside the handler; the recovery step itself failed or kept memory, because the
failed attempt's activations (held by the exception's traceback and the locals of the
failed call) were still alive while the tiny batch ran.
Shape: a `while True` loop doubling `bs`; the catch-up forward/backward runs inside the
`except` block of a helper class method; the OOM is raised by a capacity check.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class MemTestCase:
    capacity_bytes = 12 * 2**20

    def __init__(self) -> None:
        self.model = nn.Sequential(
            nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 1)
        )
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-4)

    def fwbw(self, bs: int) -> None:
        x = torch.randn(bs, 64)
        acts = [x]
        for layer in self.model:
            acts.append(layer(acts[-1]))
            used = sum(a.numel() * a.element_size() for a in acts)
            if used > self.capacity_bytes:
                raise torch.OutOfMemoryError(f"CUDA out of memory (bs={bs})")
        acts[-1].pow(2).mean().backward()

    def run_trial(self) -> None:
        bs = 256
        ooms = 0
        steps = 0
        while steps < 24:
            self.optimizer.zero_grad()
            oom = False
            try:
                self.fwbw(bs)
                bs *= 2
            except torch.OutOfMemoryError as exc:
                ooms += 1
                print(f"OOM #{ooms} ({exc}); running a tiny batch to catch up")
                oom = True  # FIX: catch up outside the handler, once `exc` is gone
            if oom:
                self.optimizer.zero_grad()
                self.fwbw(2)
                bs = 256
            self.optimizer.step()
            steps += 1


def main() -> None:
    torch.manual_seed(0)
    MemTestCase().run_trial()


if __name__ == "__main__":
    main()
