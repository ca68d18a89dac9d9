"""How to implement accumulated gradient: summing the losses then one backward.

Source: https://discuss.pytorch.org/t/how-to-implement-accumulated-gradient/3822
Reported: to emulate a big batch, the first implementation in the thread adds up
`iter_size` mini-batch losses (each already divided by `iter_size`) and calls `backward()`
once after the loop; as the answer explains, that keeps all `iter_size` graphs (and their
activations) in memory at once, whereas calling `backward()` on each scaled loss frees
each graph right away.
Shape: `loss = loss + criterion(...) / iter_size` inside an inner loop over micro-batches,
`loss.backward()` after it, one optimizer step per accumulated batch.
"""

import torch
from torch import nn

ZOO = {
    "expect": "microbatch-graph-accumulation",
    "culprit": "loss",
    "line": "loss.backward()",
    "frameworks": [],
}


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 10))
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    iter_size, minibatch_size = 4, 32
    for step in range(40):
        optimizer.zero_grad()
        loss = 0
        for _ in range(iter_size):
            x = torch.randn(minibatch_size, 128)
            target = torch.randint(0, 10, (minibatch_size,))
            output = model(x)
            loss = loss + criterion(output, target) / iter_size  # BUG: graphs add up
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
