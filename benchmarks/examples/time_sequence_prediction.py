"""Time sequence prediction: pytorch/examples ``time_sequence_prediction`` (``train.py``
with its ``generate_sine_wave.py``), kept as written there (the model, LBFGS, the closure,
the prediction of 1,000 future values under ``no_grad`` after each step), with two
changes:

* the sine waves are made in memory with the generator's own recipe and seed (T=20,
  L=1000, N=100) instead of being loaded from ``traindata.pt``;
* the plots (matplotlib) are left out: they time a plotting library, not training.

Each closure unrolls two ``LSTMCell``s over 999 time steps (batch 97, float64): tens of
thousands of small tensors saved for backward; LBFGS calls the closure up to 20 times a
step. Issue 15 timed the example at 32.6 s plain, 38.6 s watched. The run prints a digest
of its final weights, so a watched run can be checked to compute exactly what the plain
run computes.

    python benchmarks/examples/time_sequence_prediction.py --steps 15
    memwatch run benchmarks/examples/time_sequence_prediction.py --steps 15
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim


def sine_waves() -> np.ndarray:
    """``generate_sine_wave.py``: N phase-shifted sine waves of length L, period 2πT."""
    np.random.seed(2)
    T, L, N = 20, 1000, 100
    x = np.empty((N, L), "int64")
    x[:] = np.array(range(L)) + np.random.randint(-4 * T, 4 * T, N).reshape(N, 1)
    return np.sin(x / 1.0 / T).astype("float64")


class Sequence(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm1 = nn.LSTMCell(1, 51)
        self.lstm2 = nn.LSTMCell(51, 51)
        self.linear = nn.Linear(51, 1)

    def forward(self, input: torch.Tensor, future: int = 0) -> torch.Tensor:
        outputs = []
        h_t = torch.zeros(input.size(0), 51, dtype=torch.double)
        c_t = torch.zeros(input.size(0), 51, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), 51, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), 51, dtype=torch.double)

        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):  # if we should predict the future
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=15, help="steps to run")
    opt = parser.parse_args()
    np.random.seed(0)
    torch.manual_seed(0)
    data = torch.from_numpy(sine_waves())
    input = data[3:, :-1]
    target = data[3:, 1:]
    test_input = data[:3, :-1]
    test_target = data[:3, 1:]
    seq = Sequence().double()
    criterion = nn.MSELoss()
    # use LBFGS as optimizer since we can load the whole data to train
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8)
    for i in range(opt.steps):
        print("STEP: ", i)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            print("loss:", loss.item())
            loss.backward()
            return loss

        optimizer.step(closure)
        # begin to predict, no need to track gradient here
        with torch.no_grad():
            future = 1000
            pred = seq(test_input, future=future)
            loss = criterion(pred[:, :-future], test_target)
            print("test loss:", loss.item())
    with torch.no_grad():
        digest = sum(float(p.sum()) for p in seq.parameters())
    print(f"weights digest {digest:.12e}")


if __name__ == "__main__":
    main()
