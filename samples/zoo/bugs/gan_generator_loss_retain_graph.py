"""How does loss.backward() work when retain_graph=True is specified? (GAN, G then D)

Source: https://whosebug.com/question/5232549/How-does-PyTorch-s-loss-backward-work-when-retain-graph-True-is-specified
Reported: a GAN trained the generator first, then the discriminator on the same fake
batch; `loss_d.backward()` raised "Trying to backward through the graph a second time"
and `loss_g.backward(retain_graph=True)` silenced it. The answer: the discriminator loss
backpropagates through the generator; the fake batch must be detached instead.
Shape: two optimizers, one shared fake batch, both losses built before either backward
(so today's in-place checks let it run); the D loss also writes gradients into G.
"""

import torch
from torch import nn


def main():
    torch.manual_seed(0)
    netG = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 64), nn.Tanh())
    netD = nn.Sequential(nn.Linear(64, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))
    optim_g = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optim_d = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    for step in range(40):
        real = torch.randn(64, 64)
        fake = netG(torch.randn(64, 16))
        ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)

        loss_g = bce(netD(fake), ones)
        loss_d = bce(netD(real), ones) + bce(netD(fake), zeros)  # BUG: fake.detach()
        optim_g.zero_grad()
        loss_g.backward(retain_graph=True)  # BUG: added because loss_d reuses G's graph
        optim_d.zero_grad()
        loss_d.backward()
        optim_g.step()
        optim_d.step()
        if step % 10 == 0:
            print(step, f"G {loss_g.item():.3f} D {loss_d.item():.3f}")


ZOO = {
    "expect": "retain-graph-leak",
    "also_ok": ["graph-kept-across-step"],
    "culprit": "loss_g",
    "line": "loss_g.backward(retain_graph=True)",
}

if __name__ == "__main__":
    main()
