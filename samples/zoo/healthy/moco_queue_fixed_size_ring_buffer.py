"""MoCo-style negative queue: a fixed-size buffer of detached keys, enqueued every step.

Pattern: https://github.com/facebookresearch/moco (builder.py `_dequeue_and_enqueue`);
see also https://github.com/KevinMusgrave/pytorch-metric-learning/issues/421
Reported: contrastive training keeps a large queue of past embeddings as negatives; the
queue is a preallocated buffer overwritten in place at a moving pointer, filled from the key
encoder under no_grad, so it never grows and holds no graph. Looks risky (a module buffer of
features written every step, a momentum encoder updated in place every step).
Shape: a module with `register_buffer("queue", ...)` and `queue_ptr`, keys from a momentum
encoder updated under `torch.no_grad()`, logits against `self.queue.clone().detach()`.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class MoCo(nn.Module):
    def __init__(self, dim: int = 32, K: int = 1024, m: float = 0.99, T: float = 0.07) -> None:
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.encoder_q = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, dim))
        self.encoder_k = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, dim))
        self.encoder_k.load_state_dict(self.encoder_q.state_dict())
        self.encoder_k.requires_grad_(False)
        self.register_buffer("queue", nn.functional.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            k.mul_(self.m).add_(q.detach(), alpha=1 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        ptr = int(self.queue_ptr)
        self.queue[:, ptr : ptr + keys.shape[0]] = keys.T
        self.queue_ptr[0] = (ptr + keys.shape[0]) % self.K

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor):
        q = nn.functional.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k = nn.functional.normalize(self.encoder_k(im_k), dim=1)
        l_pos = (q * k).sum(1, keepdim=True)
        l_neg = q @ self.queue.clone().detach()
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long)
        self._dequeue_and_enqueue(k)
        return logits, labels


def main() -> None:
    torch.manual_seed(0)
    model = MoCo()
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), lr=0.03, momentum=0.9)
    for step in range(60):
        x = torch.randn(64, 64)
        logits, labels = model(x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x))
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0:
            print(f"step {step}: loss {loss.item():.4f} ptr {int(model.queue_ptr)}")


if __name__ == "__main__":
    main()
