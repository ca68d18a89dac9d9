"""DQN with a replay memory of numpy transitions and priorities updated from detached TD errors.

Pattern: https://github.com/Kaixhin/Rainbow/pull/33
Reported: storing transitions and priorities as numpy arrays (not autograd tensors) keeps the
replay memory free of graphs; the memory is a fixed-capacity ring buffer that fills up during
warm-up and then stays the same size. Looks risky (a buffer that grows for the first steps,
priorities written from the loss, a target network copied every k steps).
Shape: a `ReplayMemory` object with preallocated numpy arrays and a write index, sampling
a batch each step; `update_priorities(idxs, td.detach().abs().numpy())`.
"""

import numpy as np
import torch
from torch import nn

ZOO = {"expect": None}


class ReplayMemory:
    def __init__(self, capacity: int, obs_dim: int) -> None:
        self.capacity, self.index, self.full = capacity, 0, False
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.priorities = np.ones(capacity, dtype=np.float32)

    def append(self, obs, action, reward, next_obs) -> None:
        i = self.index
        self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i] = (
            obs,
            action,
            reward,
            next_obs,
        )
        self.priorities[i] = self.priorities[: len(self)].max() if len(self) else 1.0
        self.index = (i + 1) % self.capacity
        self.full = self.full or self.index == 0

    def __len__(self) -> int:
        return self.capacity if self.full else self.index

    def sample(self, rng: np.random.Generator, k: int):
        p = self.priorities[: len(self)] / self.priorities[: len(self)].sum()
        idxs = rng.choice(len(self), size=k, p=p)
        return idxs, (
            torch.from_numpy(self.obs[idxs]),
            torch.from_numpy(self.actions[idxs]),
            torch.from_numpy(self.rewards[idxs]),
            torch.from_numpy(self.next_obs[idxs]),
        )

    def update_priorities(self, idxs, priorities) -> None:
        self.priorities[idxs] = priorities + 1e-3


def main() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    online = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
    target = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
    target.load_state_dict(online.state_dict())
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-3)
    memory = ReplayMemory(capacity=512, obs_dim=8)
    obs = rng.standard_normal(8).astype(np.float32)
    for step in range(80):
        with torch.no_grad():
            action = int(online(torch.from_numpy(obs)).argmax())
        next_obs = rng.standard_normal(8).astype(np.float32)
        memory.append(obs, action, float(rng.standard_normal()), next_obs)
        obs = next_obs
        if len(memory) >= 32:
            idxs, (o, a, r, o2) = memory.sample(rng, 32)
            q = online(o).gather(1, a[:, None]).squeeze(1)
            with torch.no_grad():
                q_target = r + 0.99 * target(o2).max(1).values
            td = q - q_target
            loss = (td**2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            memory.update_priorities(idxs, td.detach().abs().numpy())
        if step % 20 == 0:
            target.load_state_dict(online.state_dict())
            print(f"step {step}: memory {len(memory)}")


if __name__ == "__main__":
    main()
