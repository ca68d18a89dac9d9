"""REINFORCE on CartPole: pytorch/examples ``reinforcement_learning/reinforce.py``, kept
as written there (the policy, ``select_action``, ``finish_episode``, the loop), with two
changes so that it runs here without gym and in bounded time:

* the environment is CartPole's own dynamics in plain Python (``CartPole`` below: the
  equations, constants and termination of gym's ``CartPole-v1``, reset from a seeded
  generator), since nothing may be downloaded;
* ``--episodes`` stops the run after that many episodes (the example stops once solved,
  ~140,000 policy forwards; issue 15 timed that run at 71.0 s plain, 105.8 s watched).

Each step of the episode is one batch-1 forward; one optimizer step per episode. The
run prints a digest of its final weights, so a watched run can be checked to compute
exactly what the plain run computes.

    python benchmarks/examples/reinforce.py --episodes 120
    memwatch run benchmarks/examples/reinforce.py --episodes 120
"""

from __future__ import annotations

import argparse
import math
import random
from collections import deque
from itertools import count

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.distributions import Categorical


class CartPole:
    """gym's ``CartPole-v1`` dynamics (Barto, Sutton & Anderson), Euler integration."""

    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.state = (0.0, 0.0, 0.0, 0.0)

    def reset(self) -> tuple[np.ndarray, dict[str, object]]:
        self.state = tuple(self.rng.uniform(-0.05, 0.05) for _ in range(4))  # type: ignore[assignment]
        return np.array(self.state, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, object]]:
        x, x_dot, theta, theta_dot = self.state
        total_mass = self.masspole + self.masscart
        polemass_length = self.masspole * self.length
        force = self.force_mag if action == 1 else -self.force_mag
        costheta, sintheta = math.cos(theta), math.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta**2 / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        x, x_dot = x + self.tau * x_dot, x_dot + self.tau * xacc
        theta, theta_dot = theta + self.tau * theta_dot, theta_dot + self.tau * thetaacc
        self.state = (x, x_dot, theta, theta_dot)
        terminated = abs(x) > self.x_threshold or abs(theta) > self.theta_threshold
        return np.array(self.state, dtype=np.float32), 1.0, terminated, False, {}


parser = argparse.ArgumentParser(description="PyTorch REINFORCE example")
parser.add_argument("--gamma", type=float, default=0.99, metavar="G")
parser.add_argument("--seed", type=int, default=543, metavar="N")
parser.add_argument("--log-interval", type=int, default=10, metavar="N")
parser.add_argument("--episodes", type=int, default=0, help="stop after N episodes (0: solved)")
args = parser.parse_args()

env = CartPole(args.seed)
torch.manual_seed(args.seed)
REWARD_THRESHOLD = 475.0


class Policy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.affine1 = nn.Linear(4, 128)
        self.dropout = nn.Dropout(p=0.6)
        self.affine2 = nn.Linear(128, 2)

        self.saved_log_probs: list[torch.Tensor] = []
        self.rewards: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.affine1(x)
        x = self.dropout(x)
        x = F.relu(x)
        action_scores = self.affine2(x)
        return F.softmax(action_scores, dim=1)


policy = Policy()
optimizer = optim.Adam(policy.parameters(), lr=1e-2)
eps = np.finfo(np.float32).eps.item()


def select_action(state: np.ndarray) -> int:
    state_t = torch.from_numpy(state).float().unsqueeze(0)
    probs = policy(state_t)
    m = Categorical(probs)
    action = m.sample()
    policy.saved_log_probs.append(m.log_prob(action))
    return int(action.item())


def finish_episode() -> None:
    R = 0.0
    policy_loss = []
    returns: deque[float] = deque()
    for r in policy.rewards[::-1]:
        R = r + args.gamma * R
        returns.appendleft(R)
    returns_t = torch.tensor(returns)
    returns_t = (returns_t - returns_t.mean()) / (returns_t.std() + eps)
    for log_prob, R_t in zip(policy.saved_log_probs, returns_t):
        policy_loss.append(-log_prob * R_t)
    optimizer.zero_grad()
    loss = torch.cat(policy_loss).sum()
    loss.backward()
    optimizer.step()
    del policy.rewards[:]
    del policy.saved_log_probs[:]


def main() -> None:
    running_reward = 10.0
    forwards = 0
    for i_episode in count(1):
        state, _ = env.reset()
        ep_reward = 0.0
        for _t in range(1, 10000):  # Don't infinite loop while learning
            action = select_action(state)
            forwards += 1
            state, reward, done, _, _ = env.step(action)
            policy.rewards.append(reward)
            ep_reward += reward
            if done:
                break
        running_reward = 0.05 * ep_reward + (1 - 0.05) * running_reward
        finish_episode()
        if i_episode % args.log_interval == 0:
            print(
                f"Episode {i_episode}\tLast reward: {ep_reward:.2f}\t"
                f"Average reward: {running_reward:.2f}"
            )
        if running_reward > REWARD_THRESHOLD or i_episode == args.episodes:
            break
    with torch.no_grad():
        digest = sum(float(p.double().sum()) for p in policy.parameters())
    print(f"episodes {i_episode} forwards {forwards} running reward {running_reward:.4f}")
    print(f"weights digest {digest:.12e}")


if __name__ == "__main__":
    main()
