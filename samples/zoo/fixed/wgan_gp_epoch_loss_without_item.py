"""Memory leak in torch.autograd.grad (WGAN-GP): memory grows after every epoch until OOM.

Source: https://github.com/pytorch/pytorch/issues/64586
Reported: training a WGAN-GP, memory increased after every epoch until CUDA ran out; the
gradient penalty (autograd.grad with create_graph=True) was fine, the reporter found
".item() should be added": the epoch's critic loss was accumulated as a tensor, keeping
every batch's double-backward graph.
Shape: per-epoch log dict of running sums; the critic is trained n_critic times per
generator step.
"""

import torch
from torch import nn


def calculate_gradient_penalty(critic, real_images, fake_images):
    eta = torch.rand(real_images.size(0), 1)
    interpolated = (eta * real_images + (1 - eta) * fake_images).requires_grad_(True)
    prob_interpolated = critic(interpolated)
    gradients = torch.autograd.grad(
        outputs=prob_interpolated,
        inputs=interpolated,
        grad_outputs=torch.ones_like(prob_interpolated),
        create_graph=True,
        retain_graph=True,
    )[0]
    return ((gradients.norm(2, dim=1) - 1) ** 2).mean() * 10


def main():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 32))
    D = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 1))
    d_optimizer = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
    g_optimizer = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
    for epoch in range(2):
        log = {"d_loss": 0.0, "g_loss": 0.0}
        for _ in range(8):
            for _ in range(3):  # n_critic
                real = torch.randn(32, 32)
                fake = G(torch.randn(32, 8)).detach()
                d_loss = D(fake).mean() - D(real).mean() + calculate_gradient_penalty(D, real, fake)
                d_optimizer.zero_grad()
                d_loss.backward()
                d_optimizer.step()
                log["d_loss"] += d_loss.item()
            g_loss = -D(G(torch.randn(32, 8))).mean()
            g_optimizer.zero_grad()
            g_loss.backward()
            g_optimizer.step()
            log["g_loss"] += g_loss.item()
        print(epoch, {k: round(float(v), 3) for k, v in log.items()})


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
