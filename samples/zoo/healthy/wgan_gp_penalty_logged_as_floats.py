"""WGAN-GP: gradient penalty with create_graph=True, one backward of the summed critic loss.

Pattern: https://github.com/caogang/wgan-gp/issues/21
Looks risky: autograd.grad with create_graph=True builds a double-backward graph every
critic step, several critic steps per generator step, and the penalty is logged; the
loss is backpropagated once and only `.item()` values are kept.
Shape: n_critic inner loop, a calc_gradient_penalty helper, a log dict of floats.
"""

import torch
from torch import nn


def calc_gradient_penalty(netD, real_data, fake_data):
    alpha = torch.rand(real_data.size(0), 1)
    interpolates = (alpha * real_data + (1 - alpha) * fake_data).requires_grad_(True)
    disc_interpolates = netD(interpolates)
    gradients = torch.autograd.grad(
        outputs=disc_interpolates,
        inputs=interpolates,
        grad_outputs=torch.ones_like(disc_interpolates),
        create_graph=True,
    )[0]
    return ((gradients.norm(2, dim=1) - 1) ** 2).mean() * 10


def main():
    torch.manual_seed(0)
    netG = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 32))
    netD = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 1))
    optD = torch.optim.Adam(netD.parameters(), lr=1e-4, betas=(0.5, 0.9))
    optG = torch.optim.Adam(netG.parameters(), lr=1e-4, betas=(0.5, 0.9))
    log = {"d": [], "gp": []}
    for _ in range(12):
        for _ in range(3):
            real = torch.randn(32, 32)
            fake = netG(torch.randn(32, 8)).detach()
            gp = calc_gradient_penalty(netD, real, fake)
            d_cost = netD(fake).mean() - netD(real).mean() + gp
            optD.zero_grad()
            d_cost.backward()
            optD.step()
            log["d"].append(d_cost.item())
            log["gp"].append(gp.item())
        g_cost = -netD(netG(torch.randn(32, 8))).mean()
        optG.zero_grad()
        g_cost.backward()
        optG.step()
    print(f"d {log['d'][-1]:.3f} gp {log['gp'][-1]:.3f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
