"""GPU memory is not released when a module registers a forward hook that uses `self`.

Source: https://github.com/pytorch/pytorch/issues/46386
Reported: instantiating a module in a loop whose `__init__` registers a forward hook
closure that refers to `self` kept every instance's memory until Python's garbage collector
happened to run: the hook (stored on the module) references the module, a reference cycle.
Shape: a closure defined in `__init__` capturing `self`, registered on the module itself;
a new model per episode (ensemble / restarts) every 4 steps.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class LeakyModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 1)
        )
        self.last_norm = 0.0

        # FIX: the hook gets the module as an argument
        self.register_forward_hook(LeakyModule.fw_hook)

    @staticmethod
    def fw_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        module.last_norm = float(output.detach().norm())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def main() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(64, 64), torch.randn(64, 1)
    for restart in range(10):
        net = LeakyModule()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
        for _ in range(4):
            loss = nn.functional.mse_loss(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"restart {restart}: loss {loss.item():.4f}, last norm {net.last_norm:.2f}")


if __name__ == "__main__":
    main()
