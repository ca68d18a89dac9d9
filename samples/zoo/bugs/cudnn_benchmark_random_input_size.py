"""Variable input size training is slow (cudnn.benchmark = True with random image sizes).

Source: https://github.com/pytorch/pytorch/issues/2759
Reported: a ResNet-50-based network fed random 400-600 px inputs ran at 0.6-2.3 s per
iteration instead of 0.02 s for a fixed size: `cudnn.benchmark = True` re-runs the
convolution algorithm search for every new input shape.
Shape: `cudnn.benchmark` set at import time as in the report; a fully convolutional model
(no pooling to a fixed size) fed a new random (h, w) every step.
"""

import numpy as np
import torch
import torch.backends.cudnn as cudnn
from torch import nn

ZOO = {
    "expect": "cudnn-benchmark-dynamic-shapes",
    "culprit": "net",
    "line": "cudnn.benchmark = True",
    "frameworks": [],
}

cudnn.benchmark = True  # BUG: benchmark mode with input sizes that change every step


def main() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 1, 1),
    )
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(30):
        h = int(rng.integers(40, 60))
        w = int(rng.integers(40, 60))
        x = torch.randn(2, 3, h, w)
        y = net(x)
        loss = y.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"last shape {tuple(x.shape)}, loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
