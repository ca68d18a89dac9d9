"""Fix memory leak: the Logger's stats are never cleared.

Source: https://github.com/oxwhirl/pymarl/pull/73
Reported: besides the runner's leak, "in Logger, the stats should be cleared periodically to
avoid accumulating unnecessary logs in the memory": every `log_stat` call appends
`(t, value)` to a list in `self.stats` and nothing ever removes old entries, though
`print_recent_stats` only reads the last few; with frequent logging host memory keeps
rising.
Shape: a Logger object with `self.stats = defaultdict(list)`; the learner logs host-side
numpy arrays (per-agent Q values of the batch) every training step.
"""

from collections import defaultdict

import numpy as np
import torch
from torch import nn

ZOO = {
    "expect": "host-memory-growth",
    "also_ok": ["memory-growth"],
    "frameworks": [],
}


class Logger:
    def __init__(self) -> None:
        self.stats: defaultdict[str, list] = defaultdict(list)

    def log_stat(self, key: str, value, t: int) -> None:
        self.stats[key].append((t, value))  # BUG: never trimmed or cleared

    def print_recent_stats(self) -> None:
        parts = []
        for key, entries in sorted(self.stats.items()):
            recent = [np.mean(v) for _, v in entries[-5:]]
            parts.append(f"{key}: {np.mean(recent):.4f}")
        print(f"t_env {self.stats['loss'][-1][0]}: " + ", ".join(parts))


def main() -> None:
    torch.manual_seed(0)
    logger = Logger()
    mac = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 8))
    optimizer = torch.optim.RMSprop(mac.parameters(), lr=5e-4)
    for t in range(60):
        obs = torch.randn(32 * 64 * 8, 16)  # batch x time x agents
        mac_out = mac(obs)
        target = torch.randn_like(mac_out)
        loss = nn.functional.mse_loss(mac_out, target)
        optimizer.zero_grad()
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(mac.parameters(), 10.0)
        optimizer.step()
        logger.log_stat("loss", loss.item(), t)
        logger.log_stat("grad_norm", grad_norm.item(), t)
        logger.log_stat("q_values", mac_out.detach().numpy().copy(), t)
        if t % 20 == 0:
            logger.print_recent_stats()


if __name__ == "__main__":
    main()
