"""A GAN whose discriminator step trains on `fake.detach()` and whose generator step reuses `fake`.

Pattern: https://github.com/yunjey/pytorch-tutorial/issues/56
Looks risky: the generator output is used by two losses in one step and two optimizers
run; the discriminator loss uses `fake.detach()`, so no graph is retained or leaked.
Shape: DCGAN-style loop, D step then G step on the same fake batch.
"""

import torch
from torch import nn


def main():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 64), nn.Tanh())
    D = nn.Sequential(nn.Linear(64, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    for step in range(40):
        real = torch.randn(64, 64)
        fake = G(torch.randn(64, 16))
        ones, zeros = torch.ones(64, 1), torch.zeros(64, 1)

        d_loss = bce(D(real), ones) + bce(D(fake.detach()), zeros)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()

        g_loss = bce(D(fake), ones)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if step % 10 == 0:
            print(step, f"D {d_loss.item():.3f} G {g_loss.item():.3f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
