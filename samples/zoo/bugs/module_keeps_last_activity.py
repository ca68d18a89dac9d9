"""A `.detach()` is missing in MergeGrowingModule.forward: the module keeps its last output.

Source: https://github.com/growingnet/gromo/issues/135
Reported: the module stored `self.activity = y` (its forward output, with graph) to compute
statistics later; without `.detach()` the last step's graph stays alive until the next
forward overwrites it (the maintainers called it a memory leak).
Shape: a module attribute overwritten on every forward (one step's graph kept, not growing).
"""

import torch
from torch import nn


class MergeModule(nn.Module):
    def __init__(self, post_merge_function: nn.Module) -> None:
        super().__init__()
        self.post_merge_function = post_merge_function
        self.store_activity = True
        self.activity = None

    def forward(self, x):
        y = self.post_merge_function(x)
        if self.store_activity:
            self.activity = y  # BUG: y.detach()
        return y


def main():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 512),
        MergeModule(nn.Sequential(nn.Linear(512, 512), nn.GELU())),
        nn.Linear(512, 4),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(40):
        x, target = torch.randn(128, 64), torch.randint(0, 4, (128,))
        loss = nn.functional.cross_entropy(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(step, f"{loss.item():.3f}", float(model[1].activity.norm()))


ZOO = {
    "expect": "graph-kept-across-step",
    "also_ok": ["lingering-step-locals"],
    "culprit": "activity",
    "line": "self.activity = y",
}

if __name__ == "__main__":
    main()
