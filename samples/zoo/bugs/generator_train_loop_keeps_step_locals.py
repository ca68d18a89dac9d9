"""Don't hold onto tensors you don't need: a generator training loop keeps last step's outputs.

Source: https://pytorch.org/docs/stable/notes/faq.html#my-model-reports-cuda-runtime-error-2-out-of-memory
Reported: the PyTorch FAQ's "Don't hold onto tensors and variables you don't need": a
tensor bound to a local stays alive as long as the scope, so last iteration's outputs are
still allocated when the next forward runs and the peak holds two steps' worth; `del` them
or move the step into a function that returns.
Shape: the training loop is a generator (`yield` per step, as progress-reporting loops
are written); while it is suspended at `yield` and when it resumes for the next batch,
its frame still holds `recon` and `loss` from the previous step until they are rebound.
"""

import torch
from torch import nn

ZOO = {
    "expect": "lingering-step-locals",
    "also_ok": ["graph-kept-across-step"],
    "culprit": "recon",
    "frameworks": [],
}


class AutoEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 64), nn.ReLU())
        self.dec = nn.Sequential(nn.Linear(64, 3 * 32 * 32), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x)).view_as(x)


def train_steps(model, optimizer, n_steps: int):
    for step in range(n_steps):
        x = torch.rand(128, 3, 32, 32)
        recon = model(x)
        loss = nn.functional.binary_cross_entropy(recon, x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        yield step, loss.item()  # BUG: recon, loss stay bound while suspended/resumed


def main() -> None:
    torch.manual_seed(0)
    model = AutoEncoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step, loss in train_steps(model, optimizer, 40):
        if step % 10 == 0:
            print(f"step {step}: loss {loss:.4f}")


if __name__ == "__main__":
    main()
