"""Stochastic weight averaging with torch.optim.swa_utils.AveragedModel and update_bn.

Pattern: https://pytorch.org/docs/stable/optim.html#weight-averaging-swa-and-ema
Reported: the documented SWA recipe: train normally, from `swa_start` on call
`swa_model.update_parameters(model)` every epoch and switch to `SWALR`, then recompute the
BatchNorm statistics with `update_bn(loader, swa_model)`. Looks risky (a second copy of the
model updated from the trained one during training, a second scheduler, BatchNorm in
training mode on a pass without backward) but AveragedModel averages without autograd and
`update_bn` runs under no_grad.
Shape: AveragedModel wrapping a small BatchNorm MLP, SWALR after epoch 3, update_bn on a
list of batches at the end, evaluation of the averaged model.
"""

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

ZOO = {"expect": None}


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    swa_model = AveragedModel(model)
    swa_scheduler = SWALR(optimizer, swa_lr=0.01)
    swa_start = 3
    loader = [(torch.randn(64, 32), torch.randint(0, 3, (64,))) for _ in range(10)]
    for epoch in range(8):
        for x, y in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        if epoch >= swa_start:
            swa_model.update_parameters(model)
            swa_scheduler.step()
        else:
            scheduler.step()
        print(f"epoch {epoch}: loss {loss.item():.4f}")
    update_bn(loader, swa_model)
    swa_model.eval()
    with torch.no_grad():
        x, y = loader[0]
        acc = (swa_model(x).argmax(1) == y).float().mean().item()
    print(f"swa accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
