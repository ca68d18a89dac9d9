"""GPU memory keeps increasing: the hedge weights of an online network are updated with grad on.

Source: https://github.com/alison-carrera/onn/pull/4
Reported: with a long data stream the model consumed more and more GPU memory; the manual
update of the per-layer mixing weights (`alpha`) ran with autograd on, so PyTorch kept
growing the computation graph. Wrapping the update in `torch.no_grad()` fixed it.
Shape: a module attribute (not a Parameter) rewritten in a manual update method.
"""

import torch
from torch import nn


class ONN(nn.Module):
    """Hedge backpropagation: one output head per depth, mixed by weights alpha."""

    def __init__(self, n_in=10, width=32, depth=3, n_classes=2, beta=0.99, s=0.2):
        super().__init__()
        self.hidden = nn.ModuleList(
            nn.Linear(n_in if i == 0 else width, width) for i in range(depth)
        )
        self.heads = nn.ModuleList(nn.Linear(width, n_classes) for _ in range(depth))
        self.alpha = torch.full((depth,), 1.0 / depth)
        self.beta, self.s = beta, s

    def forward(self, x):
        outs = []
        for layer, head in zip(self.hidden, self.heads):
            x = torch.relu(layer(x))
            outs.append(head(x))
        return outs

    def update_alpha(self, losses):
        alpha = self.alpha * torch.pow(self.beta, torch.stack(losses))  # BUG: under no_grad
        alpha = torch.clamp(alpha, min=self.s / len(losses))
        self.alpha = alpha / alpha.sum()


def main():
    torch.manual_seed(0)
    model = ONN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(60):
        x, y = torch.randn(16, 10), torch.randint(0, 2, (16,))
        losses = [nn.functional.cross_entropy(out, y) for out in model(x)]
        loss = sum(a * part for a, part in zip(model.alpha.detach(), losses))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.update_alpha(losses)
    print("alpha", [round(float(a), 3) for a in model.alpha])


ZOO = {
    "expect": "graph-accumulation",
    "culprit": "alpha",
    "line": "alpha",
}

if __name__ == "__main__":
    main()
