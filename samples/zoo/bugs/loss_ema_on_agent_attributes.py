"""Memory leak: running averages of the terminal and flow losses computed with tensors.

Source: https://github.com/alexhernandezgarcia/gflownet/pull/133
Reported: memory grew very fast with every iteration; the agent kept exponential moving
averages of its losses as tensors without detach, so the whole computational graph of
every iteration stayed alive. The fix computes the averages outside of pytorch.
Shape: attributes of a plain (non-Module) agent object, updated in a method.
"""

import torch
from torch import nn


class Agent:
    def __init__(self) -> None:
        self.policy = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 11))
        self.logZ = nn.Parameter(torch.zeros(1))
        self.opt = torch.optim.Adam([*self.policy.parameters(), self.logZ], lr=1e-3)
        self.ema_alpha = 0.9
        self.ema_loss_term = 0.0
        self.ema_loss_flow = 0.0

    def trajectory_balance(self, states, rewards):
        logits = self.policy(states)
        logprobs = torch.log_softmax(logits[:, :-1], dim=1).max(dim=1).values
        loss_term = ((self.logZ + logprobs - rewards.log()) ** 2).mean()
        loss_flow = logits[:, -1].pow(2).mean() * 0.01
        return loss_term, loss_flow

    def train_step(self, states, rewards):
        loss_term, loss_flow = self.trajectory_balance(states, rewards)
        self.opt.zero_grad()
        (loss_term + loss_flow).backward()
        self.opt.step()
        a = self.ema_alpha
        self.ema_loss_term = a * self.ema_loss_term + (1 - a) * loss_term  # BUG: .item()
        self.ema_loss_flow = a * self.ema_loss_flow + (1 - a) * loss_flow  # BUG: .item()


def main():
    torch.manual_seed(0)
    agent = Agent()
    for it in range(50):
        states = torch.randn(32, 10)
        rewards = torch.rand(32) + 0.1
        agent.train_step(states, rewards)
        if it % 10 == 0:
            print(f"it {it}: ema term {float(agent.ema_loss_term):.3f}")


ZOO = {
    "expect": "graph-accumulation",
    "culprit": "ema_loss_term",
    "line": "self.ema_loss_term = ",
}

if __name__ == "__main__":
    main()
