"""Memory leak when assigning a bound method to a module attribute (`self.which_foo = self.foo`).

Source: https://github.com/pytorch/pytorch/issues/128211
Reported: a module that stored one of its own bound methods on itself kept its buffer's
memory after it went out of scope; albanD: "`self.which_foo = self.foo` is the line that
creates the cycle", freed only when the garbage collector runs.
Shape: a hyper-parameter sweep builds a fresh model per trial (every 4 steps); each model
holds a large buffer and a bound method of itself in an attribute.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class Net(nn.Module):
    def __init__(self, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.fc2 = nn.Linear(256, 1)
        self.register_buffer("lookup", torch.randn(512, 1024))
        self.act = act  # FIX: store the choice, not a bound method of self

    def relu_act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def tanh_act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        which_act = self.relu_act if self.act == "relu" else self.tanh_act
        return self.fc2(which_act(self.fc1(x)))


def main() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(128, 64), torch.randn(128, 1)
    results = {}
    for trial in range(10):
        model = Net("relu" if trial % 2 else "tanh")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(4):
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        results[trial] = loss.item()
    print(results)


if __name__ == "__main__":
    main()
