"""Need batch inference: img_per_gpu=1 is too slow.

Source: https://github.com/open-mmlab/mmdetection/issues/932
(see also https://github.com/tianzhi0549/FCOS/issues/242)
Reported: with one image per GPU call the detector was far too slow and the reporter asked
for batched processing; images of different sizes were being run through the model one at
a time instead of being padded into one batch (what mmdetection's collate does).
Shape: each training step gets a list of images of different sizes and loops over them,
calling the model on `img.unsqueeze(0)` and summing the per-image losses; one backward
and one optimizer step per list.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class TinyDetector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.cls_head = nn.Conv2d(32, 4, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.cls_head(self.backbone(img)).mean(dim=(2, 3))


def main() -> None:
    torch.manual_seed(0)
    model = TinyDetector()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sizes = [(32, 48), (40, 40), (48, 32), (36, 44)]
    for step in range(30):
        imgs = [torch.randn(3, *sizes[(step + i) % 4]) for i in range(16)]
        labels = torch.randint(0, 4, (16,))
        batch = torch.zeros(len(imgs), 3, 48, 48)  # pad to the largest size, like a collate
        for i, img in enumerate(imgs):
            batch[i, :, : img.shape[1], : img.shape[2]] = img
        loss = nn.functional.cross_entropy(model(batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            print(f"step {step}: loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
