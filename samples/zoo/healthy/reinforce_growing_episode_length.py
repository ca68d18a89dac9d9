"""REINFORCE with episodes that get longer as the policy improves.

Pattern: https://github.com/pytorch/examples/blob/master/reinforcement_learning/reinforce.py
Reported: the policy keeps `saved_log_probs` (with their graphs) and `rewards` for the current
episode only; `finish_episode()` backpropagates and deletes them. Episodes grow from 10 to
~80 steps, so per-episode graph memory rises while nothing survives an update.
Shape: module attributes `policy.saved_log_probs` / `policy.rewards`, cleared with `del x[:]`;
one optimizer step per episode.
"""

import torch
from torch import nn
from torch.distributions import Categorical

ZOO = {"expect": None}


class Policy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.affine1 = nn.Linear(4, 128)
        self.dropout = nn.Dropout(p=0.6)
        self.affine2 = nn.Linear(128, 2)
        self.saved_log_probs: list[torch.Tensor] = []
        self.rewards: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.affine2(torch.relu(self.dropout(self.affine1(x)))), dim=1)


def finish_episode(policy: Policy, optimizer: torch.optim.Optimizer, gamma: float = 0.99) -> None:
    returns, r = [], 0.0
    for reward in reversed(policy.rewards):
        r = reward + gamma * r
        returns.insert(0, r)
    ret = torch.tensor(returns)
    ret = (ret - ret.mean()) / (ret.std() + 1e-8)
    loss = torch.cat([-lp * g for lp, g in zip(policy.saved_log_probs, ret)]).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    del policy.rewards[:]
    del policy.saved_log_probs[:]


def main() -> None:
    torch.manual_seed(0)
    policy = Policy()
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    for episode in range(30):
        state = torch.randn(1, 4)
        length = 10 + episode * 2  # the environment lets a better policy survive longer
        for _ in range(length):
            m = Categorical(policy(state))
            action = m.sample()
            policy.saved_log_probs.append(m.log_prob(action))
            policy.rewards.append(1.0 if action.item() == 1 else 0.5)
            state = state + 0.1 * torch.randn(1, 4)
        finish_episode(policy, optimizer)
    print("done")


if __name__ == "__main__":
    main()
