"""Forward hooks persist after destroying the FeatureExtractor.

Source: https://github.com/KamitaniLab/bdpy/issues/72
Reported: `FeatureExtractor` registers forward hooks on the encoder when it is created,
but nothing removes them when it is destroyed; since each reconstruction builds a new
extractor on the same encoder, the old hooks keep firing and keep accumulating features,
occupying more and more memory. The fix removes the extractor's own hooks in `__del__`.
Shape: a helper object whose `__init__` registers hooks (discarding the handles) that
append the layer outputs to a list on a per-hook object; one extractor per batch.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class FeatureExtractorHandle:
    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []

    def __call__(self, module, inputs, output) -> None:
        self.outputs.append(output.detach())


class FeatureExtractor:
    def __init__(self, encoder: nn.Module, layers: list[str]) -> None:
        self._encoder = encoder
        self._layers = layers
        self._handles = {}
        self._removables = []
        for name in layers:
            handle = FeatureExtractorHandle()
            self._removables.append(getattr(encoder, name).register_forward_hook(handle))
            self._handles[name] = handle

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._encoder(x)
        return {name: h.outputs[-1] for name, h in self._handles.items()}

    def remove(self) -> None:
        for removable in self._removables:
            removable.remove()
        self._removables.clear()


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x)))


def reconstruct(encoder: Encoder, target: torch.Tensor, n_iter: int) -> torch.Tensor:
    extractor = FeatureExtractor(encoder, ["conv1", "conv2"])
    target_feats = extractor(target)
    extractor.remove()
    image = torch.zeros_like(target, requires_grad=True)
    optimizer = torch.optim.Adam([image], lr=0.05)
    for _ in range(n_iter):
        h1 = encoder.conv1(image)
        h2 = encoder.conv2(torch.relu(h1))
        loss = nn.functional.mse_loss(h1, target_feats["conv1"]) + nn.functional.mse_loss(
            h2, target_feats["conv2"]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return image.detach()


def main() -> None:
    torch.manual_seed(0)
    encoder = Encoder().requires_grad_(False)
    for i in range(40):
        target = torch.randn(1, 3, 32, 32)
        recon = reconstruct(encoder, target, n_iter=2)
        if i % 10 == 0:
            print(f"image {i}: error {(recon - target).abs().mean().item():.3f}")


if __name__ == "__main__":
    main()
