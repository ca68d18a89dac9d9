"""Memory leak in LTRTrainer._update_stats(): AverageMeter fed a tensor with gradients.

Source: https://github.com/visionml/pytracking/pull/313
Reported: `_update_stats()` was called with `val`, a tensor with gradients; the
`AverageMeter` summed it, so the autograd graph of every batch accumulated during training
and was never released, a significant memory leak. The fix converts tensors to numbers.
Shape: a Trainer object with `self.stats`, an OrderedDict keyed by loader name of dicts of
AverageMeter objects (`meter.sum += val * n`); the actor returns a stats dict of tensors.
"""

from collections import OrderedDict

import torch
from torch import nn

ZOO = {"expect": None}


class AverageMeter:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.val = self.avg = self.sum = 0
        self.count = 0

    def update(self, val, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


class Actor:
    """Runs the network on a batch and returns the loss and a stats dict."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __call__(self, data: dict[str, torch.Tensor]):
        pred = self.net(data["search"])
        loss_bb = nn.functional.smooth_l1_loss(pred[:, :4], data["bb"])
        loss_iou = nn.functional.mse_loss(pred[:, 4], data["iou"])
        loss = loss_bb + 0.5 * loss_iou
        stats = {"Loss/total": loss, "Loss/bb": loss_bb, "Loss/iou": loss_iou}
        return loss, stats


class LTRTrainer:
    def __init__(self, actor: Actor, optimizer: torch.optim.Optimizer) -> None:
        self.actor = actor
        self.optimizer = optimizer
        self.stats: OrderedDict[str, dict[str, AverageMeter]] = OrderedDict()

    def _update_stats(self, new_stats: dict, batch_size: int, loader_name: str) -> None:
        loader_stats = self.stats.setdefault(loader_name, OrderedDict())
        for name, val in new_stats.items():
            val = val.item() if torch.is_tensor(val) else val
            loader_stats.setdefault(name, AverageMeter()).update(val, batch_size)

    def cycle_dataset(self, loader_name: str, n_batches: int) -> None:
        for i in range(n_batches):
            data = {
                "search": torch.randn(16, 64),
                "bb": torch.randn(16, 4),
                "iou": torch.rand(16),
            }
            loss, stats = self.actor(data)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self._update_stats(stats, 16, loader_name)
            if (i + 1) % 20 == 0:
                avg = float(self.stats[loader_name]["Loss/total"].avg)
                print(f"[{loader_name}] {i + 1}/{n_batches} Loss/total {avg:.4f}")


def main() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 5))
    trainer = LTRTrainer(Actor(net), torch.optim.Adam(net.parameters(), lr=1e-3))
    trainer.cycle_dataset("train", 60)


if __name__ == "__main__":
    main()
