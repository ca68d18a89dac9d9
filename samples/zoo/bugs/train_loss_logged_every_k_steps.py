"""HW7 out of memory: `train_loss += output.loss` between two logging steps.

Source: https://github.com/pai4451/ML2021/issues/2
Reported: CPU RAM kept increasing until 64 GB were used; `train_loss += output.loss` stored
the complete computation graph; `output.loss.detach()` or `.item()` solved it.
Shape: a model returning an output object (like transformers' ModelOutput); the sum is
reset every `logging_step` steps, so the graph grows in a saw-tooth, not without bound.
"""

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class QAOutput:
    loss: torch.Tensor
    start_logits: torch.Tensor
    end_logits: torch.Tensor


class TinyQA(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 32)
        self.encoder = nn.Sequential(nn.Linear(32, 32), nn.Tanh())
        self.qa_outputs = nn.Linear(32, 2)

    def forward(self, input_ids, start_positions, end_positions):
        logits = self.qa_outputs(self.encoder(self.embed(input_ids)))
        start_logits, end_logits = logits.unbind(dim=-1)
        ce = nn.functional.cross_entropy
        loss = (ce(start_logits, start_positions) + ce(end_logits, end_positions)) / 2
        return QAOutput(loss, start_logits, end_logits)


def main():
    torch.manual_seed(0)
    model = TinyQA()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    logging_step = 20
    train_loss = train_acc = 0
    for step in range(1, 81):
        input_ids = torch.randint(0, 50, (8, 24))
        start, end = torch.randint(0, 12, (8,)), torch.randint(12, 24, (8,))
        output = model(input_ids, start, end)
        start_index = torch.argmax(output.start_logits, dim=1)
        end_index = torch.argmax(output.end_logits, dim=1)
        train_acc += ((start_index == start) & (end_index == end)).float().mean()
        train_loss += output.loss  # BUG: output.loss.item()
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % logging_step == 0:
            print(
                f"step {step}: loss {float(train_loss) / logging_step:.3f}, "
                f"acc {float(train_acc) / logging_step:.3f}"
            )
            train_loss = train_acc = 0


ZOO = {
    "expect": "graph-accumulation",
    "culprit": "train_loss",
    "line": "train_loss += output.loss",
}

if __name__ == "__main__":
    main()
