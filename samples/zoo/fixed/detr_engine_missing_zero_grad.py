"""need zero_grad: train_one_epoch never calls optimizer.zero_grad().

Source: https://github.com/IDEA-Research/DN-DETR/issues/19
Reported: in `engine.py`'s `train_one_epoch` the loop computes the weighted loss dict,
calls `losses.backward()`, clips the gradients and steps, but "it looks like you forgot
optimizer.zero_grad()": every step's gradients are added to all the previous ones, so each
update (and the clipping) sees the sum of the whole run's gradients.
Shape: DETR-style `train_one_epoch(model, criterion, data_loader, optimizer, max_norm)`
with a `loss_dict` weighted by `criterion.weight_dict`, called once per epoch.
"""

import torch
from torch import nn

ZOO = {"expect": None}


class SetCriterion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight_dict = {"loss_ce": 1.0, "loss_bbox": 5.0}

    def forward(self, outputs, targets):
        return {
            "loss_ce": nn.functional.cross_entropy(outputs["pred_logits"], targets["labels"]),
            "loss_bbox": nn.functional.l1_loss(outputs["pred_boxes"], targets["boxes"]),
        }


class TinyDETR(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(64, 96), nn.ReLU())
        self.class_embed = nn.Linear(96, 8)
        self.bbox_embed = nn.Linear(96, 4)

    def forward(self, samples):
        h = self.backbone(samples)
        return {"pred_logits": self.class_embed(h), "pred_boxes": self.bbox_embed(h).sigmoid()}


def train_one_epoch(model, criterion, data_loader, optimizer, max_norm: float) -> float:
    model.train()
    for samples, targets in data_loader:
        outputs = model(samples)
        loss_dict = criterion(outputs, targets)
        weight_dict = criterion.weight_dict
        losses = sum(loss_dict[k] * weight_dict[k] for k in loss_dict if k in weight_dict)
        optimizer.zero_grad()
        losses.backward()
        if max_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
    return losses.item()


def main() -> None:
    torch.manual_seed(0)
    model, criterion = TinyDETR(), SetCriterion()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    for epoch in range(5):
        data_loader = [
            (
                torch.randn(16, 64),
                {"labels": torch.randint(0, 8, (16,)), "boxes": torch.rand(16, 4)},
            )
            for _ in range(10)
        ]
        loss = train_one_epoch(model, criterion, data_loader, optimizer, max_norm=0.1)
        print(f"epoch {epoch}: loss {loss:.4f}")


if __name__ == "__main__":
    main()
