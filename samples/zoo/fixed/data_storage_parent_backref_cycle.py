"""Memory leak during data loading: a batch object's storage points back at its parent.

Source: https://github.com/pyg-team/pytorch_geometric/issues/5839
Reported: `Data` created a storage object holding the tensors with a `_parent` reference back
to the `Data` object; the cyclic reference kept each batch's tensors alive until the garbage
collector ran, and memory grew during data loading.
Shape: a per-batch container class (`GraphBatch`) whose `_store` (a helper object) holds the
tensors and a back-reference `_parent`; built by a collate function every step.
"""

import weakref

import torch
from torch import nn

ZOO = {"expect": None}


class Storage:
    def __init__(self, **kwargs: object) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)


class GraphBatch:
    def __init__(self, x: torch.Tensor, edge_index: torch.Tensor, y: torch.Tensor) -> None:
        # FIX: weak back-reference
        self.__dict__["_store"] = Storage(
            x=x, edge_index=edge_index, y=y, _parent=weakref.ref(self)
        )

    def __getattr__(self, key: str) -> torch.Tensor:
        return getattr(self.__dict__["_store"], key)


def collate(n_nodes: int) -> GraphBatch:
    x = torch.randn(n_nodes, 128)
    edge_index = torch.randint(0, n_nodes, (2, n_nodes * 16))
    return GraphBatch(x, edge_index, torch.randn(n_nodes, 1))


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(40):
        batch = collate(2048)
        h = model[0](batch.x)
        agg = torch.zeros_like(h).index_add_(0, batch.edge_index[1], h[batch.edge_index[0]])
        loss = nn.functional.mse_loss(model[2](torch.relu(agg)), batch.y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
