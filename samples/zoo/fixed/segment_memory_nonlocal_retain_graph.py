"""Do we need `.backward(retain_graph=True)`? Compressive memory carried across segments.

Source: https://github.com/jlamprou/Infini-Attention/issues/3
Reported: training over segments with a compressive memory (`M`, `z`) carried from one
segment to the next raised "Trying to backward through the graph a second time", so the
user turned on `retain_graph=True`, which "consumes more memory"; the author's answer:
detach `M` and `z` when updating the memory, then no retained graph is needed.
Shape: the memory lives in a closure (`make_segment_step()` returns `step()`, which
updates `M` and `z` through `nonlocal`), each segment's loss is backpropagated with
`retain_graph=True` and the optimizer steps every segment.
"""

import torch
from torch import nn

ZOO = {"expect": None}

DIM = 32


class InfiniBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)
        self.out = nn.Linear(DIM, DIM)

    def forward(self, x, M, z):
        q, k, v = torch.sigmoid(self.q(x)), torch.sigmoid(self.k(x)), self.v(x)
        retrieved = (q @ M) / (q @ z).clamp_min(1e-6)
        M_new = M + k.transpose(-1, -2) @ v
        z_new = z + k.sum(dim=-2, keepdim=True).transpose(-1, -2)
        return self.out(retrieved + v), M_new, z_new


def make_segment_step(model: InfiniBlock, optimizer: torch.optim.Optimizer):
    M = torch.zeros(8, DIM, DIM)
    z = torch.full((8, DIM, 1), 1e-3)

    def step(segment: torch.Tensor, target: torch.Tensor) -> float:
        nonlocal M, z
        out, M, z = model(segment, M, z)
        M, z = M.detach(), z.detach()
        loss = nn.functional.mse_loss(out, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def main() -> None:
    torch.manual_seed(0)
    model = InfiniBlock()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    step = make_segment_step(model, optimizer)
    for i in range(40):
        segment = torch.randn(8, 16, DIM)
        loss = step(segment, segment.roll(1, dims=1))
        if i % 10 == 0:
            print(f"segment {i}: loss {loss:.4f}")


if __name__ == "__main__":
    main()
