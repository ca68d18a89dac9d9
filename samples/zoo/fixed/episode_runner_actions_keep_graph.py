"""Fix memory leak: actions stored in the replay buffer with their computation graph.

Source: https://github.com/oxwhirl/pymarl/pull/73
Reported: in `EpisodeRunner` the agents' actions were stored into the episode batch (and so
into the replay buffer) without detaching them, so the whole graph that produced each action
stayed alive; CPU memory grew linearly through an 8M-step run until it ran out.
Shape: a runner object fills an `EpisodeBatch` (a dict of per-step lists) with the outputs of
the agent (actions taken as a differentiable softmax sample), the batch is inserted into a
`ReplayBuffer` list; the learner samples from the buffer and trains on detached inputs.
"""

import random

import torch
from torch import nn

ZOO = {"expect": None}


class Agent(nn.Module):
    def __init__(self, obs_dim: int = 24, n_actions: int = 6) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, 64), nn.ReLU(), nn.Linear(64, n_actions))

    def select_actions(self, obs: torch.Tensor) -> torch.Tensor:
        q = self.net(obs)
        return nn.functional.gumbel_softmax(q, tau=1.0, hard=True)


class EpisodeBatch:
    def __init__(self) -> None:
        self.data: dict[str, list[torch.Tensor]] = {"obs": [], "actions": [], "reward": []}

    def update(self, key: str, value: torch.Tensor) -> None:
        self.data[key].append(value)


class ReplayBuffer:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.episodes: list[EpisodeBatch] = []

    def insert_episode_batch(self, batch: EpisodeBatch) -> None:
        self.episodes.append(batch)
        if len(self.episodes) > self.capacity:
            self.episodes.pop(0)

    def sample(self, k: int) -> list[EpisodeBatch]:
        return random.sample(self.episodes, k)


class EpisodeRunner:
    def __init__(self, agent: Agent, episode_limit: int = 4) -> None:
        self.agent = agent
        self.episode_limit = episode_limit

    def run(self) -> EpisodeBatch:
        batch = EpisodeBatch()
        for _t in range(self.episode_limit):
            obs = torch.randn(8, 24)
            actions = self.agent.select_actions(obs)
            batch.update("obs", obs)
            batch.update("actions", actions.detach())
            batch.update("reward", torch.randn(8))
        return batch


def main() -> None:
    torch.manual_seed(0)
    random.seed(0)
    agent = Agent()
    optimizer = torch.optim.RMSprop(agent.parameters(), lr=5e-4)
    runner, buffer = EpisodeRunner(agent), ReplayBuffer(capacity=5000)
    for episode in range(60):
        buffer.insert_episode_batch(runner.run())
        if len(buffer.episodes) >= 4:
            for ep in buffer.sample(4):
                obs = torch.cat(ep.data["obs"])
                taken = torch.cat(ep.data["actions"]).detach().argmax(dim=1)
                reward = torch.cat(ep.data["reward"])
                q = agent.net(obs).gather(1, taken[:, None]).squeeze(1)
                loss = nn.functional.mse_loss(q, reward)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        if episode % 20 == 0:
            print(f"episode {episode}: buffer {len(buffer.episodes)}")


if __name__ == "__main__":
    main()
