"""Finish validation without running model.train(): training continues in eval mode.

Source: https://github.com/fartashf/vsepp/issues/4
Reported: every `val_step` iterations validate() calls model.val_start(), which puts the
image and text encoders in eval mode; model.train_start() runs only at the start of the
next epoch, so dropout and batch norm were active only for the first val_step iterations
of each epoch. Fixing it changed the results noticeably.
Shape: a model wrapper (not an nn.Module) with two encoders and val_start/train_start
methods; validation every k iterations inside the epoch.
"""

import torch
from torch import nn


class VSE:
    def __init__(self):
        self.img_enc = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Dropout(0.3))
        self.txt_enc = nn.Sequential(nn.Embedding(100, 32), nn.Dropout(0.3))
        params = [*self.img_enc.parameters(), *self.txt_enc.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=2e-4)
        self.Eiters = 0

    def train_start(self):
        self.img_enc.train()
        self.txt_enc.train()

    def val_start(self):
        self.img_enc.eval()
        self.txt_enc.eval()

    def forward_emb(self, images, captions):
        img = nn.functional.normalize(self.img_enc(images), dim=1)
        cap = nn.functional.normalize(self.txt_enc(captions).mean(dim=1), dim=1)
        return img, cap

    def train_emb(self, images, captions):
        self.Eiters += 1
        img, cap = self.forward_emb(images, captions)
        scores = img @ cap.T
        loss = (0.2 - scores.diag()[:, None] + scores).clamp(min=0).sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def validate(val_loader, model):
    model.val_start()
    with torch.no_grad():
        sims = [model.forward_emb(i, c) for i, c in val_loader]
    return float(sum((a * b).sum() for a, b in sims))


def train(train_loader, val_loader, model, val_step):
    model.train_start()
    for images, captions in train_loader:
        model.train_emb(images, captions)
        if model.Eiters % val_step == 0:
            validate(val_loader, model)
            model.train_start()


def main():
    torch.manual_seed(0)
    model = VSE()
    batch = lambda: (torch.randn(16, 64), torch.randint(0, 100, (16, 7)))  # noqa: E731
    train_loader, val_loader = [batch() for _ in range(30)], [batch() for _ in range(3)]
    for epoch in range(2):
        train(train_loader, val_loader, model, val_step=10)
        print("epoch", epoch, "iters", model.Eiters)


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
