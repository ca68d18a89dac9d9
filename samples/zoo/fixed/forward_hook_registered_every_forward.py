"""X-LoRA: forward hooks accumulate, one registered per forward call, only the last removed.

Source: https://github.com/huggingface/peft/pull/2761
Reported: a hook that injects the scalings was registered on every forward call, while only
the handle of the last one was kept and removed, so during generation hooks piled up (each
holding its scalings tensor) and every forward ran all of them.
Shape: the model's own `forward` registers a forward pre-hook on its sub-layers each call and
keeps only the latest handle in `self._scalings_handle`; the hook closure captures a tensor.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class XLoraLike(nn.Module):
    def __init__(self, d: int = 128, n_experts: int = 4) -> None:
        super().__init__()
        self.classifier = nn.Linear(d, n_experts)
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(3))
        self._scalings_handle = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scalings = torch.softmax(self.classifier(x), dim=-1).repeat(1, 64)

        def inject_scalings(module: nn.Module, args: tuple) -> None:
            module.current_scalings = scalings

        handles = [layer.register_forward_pre_hook(inject_scalings) for layer in self.layers]
        try:
            for layer in self.layers:
                x = torch.relu(layer(x))
        finally:
            for handle in handles:  # FIX: every hook of this call is removed
                handle.remove()
        return x


def main() -> None:
    torch.manual_seed(0)
    model = XLoraLike()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(40):
        x = torch.randn(64, 128)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if model._scalings_handle is not None and step % 10 == 9:
            model._scalings_handle.remove()
    print("hooks on layer 0:", len(model.layers[0]._forward_pre_hooks))


if __name__ == "__main__":
    main()
