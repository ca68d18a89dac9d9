"""Epoch outputs hold `output['loss']` for the whole epoch (gathered, not detached).

Source: https://github.com/TRI-ML/packnet-sfm/issues/47
(gather per batch: https://github.com/CarperAI/trlx/pull/315)
Reported: memory grew through every epoch and dropped after it; the trainer appended each
batch's output dict, whose `loss` still carried its autograd graph, to an `outputs` list
read at the epoch end. The maintainer confirmed: detach `output['loss']` before appending.
Written with accelerate, the gathered loss and logits (`accelerator.gather`) keep the graph.
Shape: a plain accelerate loop; list of dicts of `accelerator.gather(...)` results,
aggregated every 20 steps (every-k-steps).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ZOO = {
    "expect": "graph-accumulation",
    "also_ok": ["memory-growth"],
    "culprit": "outputs",
    "line": "outputs.append(",
    "frameworks": ["accelerate"],
}


def main() -> None:
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = TensorDataset(torch.randn(3200, 64), torch.randint(0, 16, (3200,)))
    loader = DataLoader(data, batch_size=64)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    outputs = []
    for step, (x, y) in enumerate(loader):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        # BUG: graph kept
        outputs.append({"loss": accelerator.gather(loss), "logits": accelerator.gather(logits)})
        if (step + 1) % 25 == 0:
            mean_loss = torch.stack([o["loss"] for o in outputs]).mean()
            accelerator.print(f"step {step + 1}: mean loss {mean_loss.item():.4f}")


if __name__ == "__main__":
    main()
