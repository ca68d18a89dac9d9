"""RAM usage increases continuously as training progresses (dataset memoization).

Source: https://github.com/dvornikita/fewshot_ensemble/issues/4
Reported: CPU RAM grew every iteration from 5 GB past 16 GB until the system crashed; the
dataset memoized every loaded episode in memory. Turning memoization off fixed it.
Shape: a Dataset object with a `self._memo` dict of numpy arrays (host memory, not torch
tensors), filled in `__getitem__` for every new index; the loop never revisits an index.
"""

import numpy as np
import torch
from torch import nn

ZOO = {"expect": None}


class EpisodeDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, memoize: bool = True) -> None:
        self.n = n
        self.memoize = memoize
        self._memo: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(index)
        images = rng.standard_normal((512, 1024), dtype=np.float32)
        labels = rng.integers(0, 5, 512)
        return images, labels

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index in self._memo:
            return self._memo[index]
        episode = self.load(index)
        if self.memoize:
            self._memo[index] = episode
        return episode


def main() -> None:
    torch.manual_seed(0)
    # FIX: episodes are never revisited, do not memoize
    dataset = EpisodeDataset(10_000, memoize=False)
    model = nn.Sequential(nn.Linear(1024, 64), nn.ReLU(), nn.Linear(64, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(40):
        images, labels = dataset[step]
        loss = nn.functional.cross_entropy(
            model(torch.from_numpy(images)), torch.from_numpy(labels)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"memoized {len(dataset._memo)} episodes, loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
