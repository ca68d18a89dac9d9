"""403: question about `h_state = h_state.data`: without it, retain_graph=True "fixes" the error.

Source: https://github.com/MorvanZhou/PyTorch-Tutorial/issues/57
Reported: commenting out `h_state = h_state.data` in the RNN regression tutorial raised
"Trying to backward through the graph a second time"; `loss.backward(retain_graph=True)`
made the error go away, while the state now carries every previous step's graph.
Shape: the tutorial's sin -> cos regression: `h_state` is a local of the loop, passed
in and returned by the model each step.
The update is plain SGD on `p.data` (as 0.4-era code did); with a torch.optim optimizer
today's PyTorch stops this loop with an in-place modification error instead.
"""

import math

import torch
from torch import nn


class RNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(input_size=1, hidden_size=32, num_layers=1, batch_first=True)
        self.out = nn.Linear(32, 1)

    def forward(self, x, h_state):
        r_out, h_state = self.rnn(x, h_state)
        return self.out(r_out), h_state


def main():
    torch.manual_seed(0)
    rnn = RNN()
    loss_func = nn.MSELoss()
    h_state = None
    for step in range(60):
        start, end = step * math.pi, (step + 1) * math.pi
        steps = torch.linspace(start, end, 10)
        x, y = torch.sin(steps)[None, :, None], torch.cos(steps)[None, :, None]
        prediction, h_state = rnn(x, h_state)
        # BUG: the tutorial's `h_state = h_state.data` was removed
        loss = loss_func(prediction, y)
        rnn.zero_grad()
        loss.backward(retain_graph=True)  # BUG: added to silence the error
        for p in rnn.parameters():  # plain SGD on .data, as PyTorch 0.4-era code did
            p.data.add_(p.grad, alpha=-0.02)
    print(f"loss {loss.item():.4f}")


ZOO = {
    "expect": "graph-accumulation",
    "also_ok": ["retain-graph-leak"],
    "culprit": "h_state",
}

if __name__ == "__main__":
    main()
