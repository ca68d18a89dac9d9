"""Why in my model_search only loss.backward(retain_graph=True) can run (DARTS RNN search).

Source: https://github.com/quark0/darts/issues/56
Reported: after porting to PyTorch 0.4 the RNN search raised "backward through the graph a
second time" unless retain_graph=True was passed; `repackage_hidden` no longer cut the
history (it rewrapped `h.data` in the 0.3 way), so training backpropagated all the way back
through time. The answer: make repackage_hidden return `h.detach()`.
Shape: a hand-written recurrent cell; the hidden state is a list with one tensor per
layer, passed through a repackage helper that does not detach.
The update is plain SGD on `p.data` (as 0.4-era code did); with a torch.optim optimizer
today's PyTorch stops this loop with an in-place modification error instead.
"""

import torch
from torch import nn


class DARTSCell(nn.Module):
    def __init__(self, ninp, nhid):
        super().__init__()
        self._W0 = nn.Parameter(torch.randn(ninp + nhid, 2 * nhid) * 0.1)
        self._Ws = nn.Parameter(torch.randn(nhid, 2 * nhid) * 0.1)

    def forward(self, inputs, hidden):
        outputs = []
        for x in inputs.unbind(0):
            c, h = torch.split(torch.cat([x, hidden], -1) @ self._W0, hidden.size(-1), -1)
            s0 = hidden + c.sigmoid() * (h.tanh() - hidden)
            c1, h1 = torch.split(s0 @ self._Ws, hidden.size(-1), -1)
            hidden = s0 + c1.sigmoid() * (h1.relu() - s0)
            outputs.append(hidden)
        return torch.stack(outputs), hidden


class RNNModelSearch(nn.Module):
    def __init__(self, ntoken=40, ninp=24, nhid=24, nlayers=2):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnns = nn.ModuleList(DARTSCell(ninp if i == 0 else nhid, nhid) for i in range(nlayers))
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, input, hidden):
        raw_output, new_hidden = self.encoder(input), []
        for rnn, h in zip(self.rnns, hidden):
            raw_output, h = rnn(raw_output, h)
            new_hidden.append(h)
        return self.decoder(raw_output), new_hidden


def repackage_hidden(h):
    """Wraps hidden states in new tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return [repackage_hidden(v) for v in h]


def main():
    torch.manual_seed(0)
    model = RNNModelSearch()
    data = torch.randint(0, 40, (6 * 24 + 1, 4))
    hidden = [torch.zeros(4, 24) for _ in model.rnns]
    for i in range(0, 6 * 24, 6):
        inp, targets = data[i : i + 6], data[i + 1 : i + 7]
        hidden = repackage_hidden(hidden)
        log_prob, hidden = model(inp, hidden)
        loss = nn.functional.cross_entropy(log_prob.flatten(0, 1), targets.flatten())
        model.zero_grad()
        loss.backward()
        for p in model.parameters():  # plain SGD on .data, as PyTorch 0.4-era code did
            p.data.add_(p.grad, alpha=-0.5)
    print(f"loss {loss.item():.3f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
