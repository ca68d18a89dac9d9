"""Trying to backward through the graph a second time; with retain_graph=True the GPU runs out.

Source: https://github.com/sgadgil6/cnslab_fmri/issues/4
Reported: run_training_lstm.py failed at loss.backward() with "Trying to backward through
the graph a second time"; adding retain_graph=True made it run out of memory. The model
stored its LSTM state in `self.hidden` and fed it back into the next forward.
Shape: the hidden state is a module attribute (a tuple), rewritten in forward().
The update is plain SGD on `p.data` (as 0.4-era code did); with a torch.optim optimizer
today's PyTorch stops this loop with an in-place modification error instead.
"""

import torch
from torch import nn


class fMRI_LSTM(nn.Module):
    def __init__(self, hidden_dim, input_dim, batch):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.lstm = nn.LSTM(input_dim, hidden_dim, num_layers=1, batch_first=True)
        self.linear = nn.Linear(hidden_dim, 1)
        self.dropout = nn.Dropout(p=0.2)
        self.hidden = (torch.zeros(1, batch, hidden_dim), torch.zeros(1, batch, hidden_dim))

    def forward(self, x):
        lstm_out, self.hidden = self.lstm(x, self.hidden)  # BUG: state carried with its graph
        out = self.dropout(lstm_out[:, -1, :])
        return torch.sigmoid(self.linear(out))


def main():
    torch.manual_seed(0)
    model = fMRI_LSTM(hidden_dim=32, input_dim=16, batch=8)
    criterion = nn.BCELoss()
    for epoch in range(40):
        x, y = torch.randn(8, 10, 16), torch.randint(0, 2, (8, 1)).float()
        loss = criterion(model(x), y)
        model.zero_grad()
        loss.backward(retain_graph=True)  # BUG: silences the error, keeps every graph
        for p in model.parameters():  # plain SGD on .data, as PyTorch 0.4-era code did
            p.data.add_(p.grad, alpha=-1e-2)
        if epoch % 10 == 0:
            print(epoch, f"{loss.item():.4f}")


ZOO = {
    "expect": "graph-accumulation",
    "also_ok": ["retain-graph-leak"],
    "culprit": "hidden",
    "line": "self.hidden",
}

if __name__ == "__main__":
    main()
