"""PyTorch 0.4 support: the decoder state's detach() detaches nothing (truncated BPTT).

Source: https://github.com/OpenNMT/OpenNMT-py/issues/403
Reported: porting to 0.4, `h.detach_()` failed on views and was replaced by `h.detach()`;
as the issue points out, that result is a new tensor nobody keeps, so the state object's
hidden state still carries its history; the next backward then fails unless
retain_graph=True is passed (tempting, since the error suggests it).
Shape: a DecoderState helper object whose detach() method loops over its tensors without
rebinding them; the state is carried across truncated-BPTT chunks.
The update is plain SGD on `p.data` (as 0.4-era code did); with a torch.optim optimizer
today's PyTorch stops this loop with an in-place modification error instead.
"""

import torch
from torch import nn


class RNNDecoderState:
    def __init__(self, hidden, input_feed):
        self.hidden = hidden
        self.input_feed = input_feed

    @property
    def _all(self):
        return (*self.hidden, self.input_feed)

    def detach(self):
        for h in self._all:
            h.detach()  # BUG: the detached copy is thrown away

    def update_state(self, hidden, input_feed):
        self.hidden, self.input_feed = hidden, input_feed


class Decoder(nn.Module):
    def __init__(self, vocab=50, dim=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(2 * dim, dim)
        self.out = nn.Linear(dim, vocab)

    def forward(self, tgt, state):
        outputs, hidden, feed = [], state.hidden, state.input_feed
        for emb in self.embed(tgt).unbind(0):
            out, hidden = self.rnn(torch.cat([emb, feed], -1)[None], hidden)
            feed = out[0]
            outputs.append(feed)
        state.update_state(hidden, feed)
        return self.out(torch.stack(outputs))


def main():
    torch.manual_seed(0)
    model = Decoder()
    batch, dim, trunc_size = 4, 32, 5
    tgt = torch.randint(0, 50, (5 * 30 + 1, batch))
    state = RNNDecoderState(
        (torch.zeros(1, batch, dim), torch.zeros(1, batch, dim)), torch.zeros(batch, dim)
    )
    for j in range(0, 5 * 30, trunc_size):
        state.detach()
        logits = model(tgt[j : j + trunc_size], state)
        loss = nn.functional.cross_entropy(
            logits.flatten(0, 1), tgt[j + 1 : j + 1 + trunc_size].flatten()
        )
        model.zero_grad()
        loss.backward(retain_graph=True)  # BUG: needed only because the state keeps its history
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-0.5)
    print(f"loss {loss.item():.3f}")


ZOO = {
    "expect": "graph-accumulation",
    "also_ok": ["retain-graph-leak"],
    "culprit": "state",
}

if __name__ == "__main__":
    main()
