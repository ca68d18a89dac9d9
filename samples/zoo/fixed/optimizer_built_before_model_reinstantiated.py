"""char-rnn-classification: loss stays big after switching to `optimizer.step()`.

Source: https://github.com/spro/practical-pytorch/issues/9
Reported: the loss did not go down once the manual update was replaced by an optimizer;
the maintainer found the model was instantiated twice, the optimizer having been built on
the first instance, so `optimizer.step()` updated parameters no live model used.
Shape: module globals `rnn` and `optimizer`; `rnn` is rebound at module level after the
optimizer was created; `train()` reads both globals.
"""

import torch
from torch import nn

ZOO = {"expect": None}

N_LETTERS, N_HIDDEN, N_CATEGORIES = 57, 128, 18
learning_rate = 0.005


class RNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
        self.i2o = nn.Linear(input_size + hidden_size, output_size)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        combined = torch.cat((x, hidden), 1)
        return torch.log_softmax(self.i2o(combined), dim=1), torch.tanh(self.i2h(combined))


criterion = nn.NLLLoss()


def train(category_tensor: torch.Tensor, line_tensor: torch.Tensor) -> float:
    hidden = torch.zeros(1, rnn.hidden_size)
    optimizer.zero_grad()
    for i in range(line_tensor.size(0)):
        output, hidden = rnn(line_tensor[i], hidden)
    loss = criterion(output, category_tensor)
    loss.backward()
    optimizer.step()
    return loss.item()


rnn = RNN(N_LETTERS, N_HIDDEN, N_CATEGORIES)
# FIX: built on the model that trains
optimizer = torch.optim.SGD(rnn.parameters(), lr=learning_rate)


def main() -> None:
    torch.manual_seed(0)
    current_loss = 0.0
    for it in range(1, 61):
        category = torch.randint(0, N_CATEGORIES, (1,))
        line = torch.zeros(6, 1, N_LETTERS)
        line[torch.arange(6), 0, torch.randint(0, N_LETTERS, (6,))] = 1.0
        current_loss += train(category, line)
        if it % 20 == 0:
            print(f"{it}: avg loss {current_loss / 20:.4f}")
            current_loss = 0.0


if __name__ == "__main__":
    main()
