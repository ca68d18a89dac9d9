"""Memory issues caused by += with pytorch graph objects: epoch averages kept as tensors.

Source: https://github.com/jostmey/NakedAttention/issues/1
Reported: running the script in a Kaggle notebook quickly ran out of RAM; `e_train +=
e_batch/len(loader_train)` (and the same for accuracy) built one graph for the whole
epoch. The fix detaches each batch value before accumulating it.
Shape: a script-style loop whose epoch statistics are module globals.
"""

import torch
from torch import nn

e_train = 0.0
a_train = 0.0


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(16, 16)
        self.k = nn.Linear(16, 16)
        self.v = nn.Linear(16, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(1, 2) / 4.0
        h = torch.softmax(scores, dim=-1) @ self.v(x)
        return self.out(h.mean(dim=1))


def main():
    global e_train, a_train
    torch.manual_seed(0)
    model = Attention()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    loader_train = [(torch.randn(16, 12, 16), torch.randint(0, 2, (16,))) for _ in range(40)]
    for xs, ys in loader_train:
        logits = model(xs)
        e_batch = loss_fn(logits, ys)
        # a soft accuracy: probability given to the right class (differentiable)
        a_batch = torch.softmax(logits, dim=1).gather(1, ys[:, None]).mean()
        optimizer.zero_grad()
        e_batch.backward()
        optimizer.step()
        e_train += e_batch.detach() / len(loader_train)
        a_train += a_batch.detach() / len(loader_train)
    print(f"loss {float(e_train):.4f} accuracy {float(a_train):.4f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
