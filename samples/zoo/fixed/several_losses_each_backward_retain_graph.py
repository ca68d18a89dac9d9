"""Memory blow up when setting retain_graph = True (VAE with attribute losses).

Source: https://github.com/GBLin5566/toward-controlled-generation-of-text-pytorch/issues/9
Reported: following the advice to set retain_graph=True made memory blow up; the reporter
pointed out that retain_graph=True is needed only before the last backward of the step,
the last one must free the graph.
Shape: a list of loss terms, each backpropagated in turn inside a helper, every backward
with retain_graph=True (the last one too).
"""

import torch
from torch import nn


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 32))
        self.decoder = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 40))
        self.attr = nn.Linear(16, 2)

    def forward(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decoder(z), self.attr(z), mu, logvar


def backward_all(losses):
    for i, loss in enumerate(losses):
        loss.backward(retain_graph=i < len(losses) - 1)


def main():
    torch.manual_seed(0)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(40):
        x, c = torch.randn(128, 40), torch.randint(0, 2, (128,))
        recon, attr_logits, mu, logvar = model(x)
        language_loss = nn.functional.mse_loss(recon, x)
        latent_loss = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean()
        l_attr_c = nn.functional.cross_entropy(attr_logits, c)
        optimizer.zero_grad()
        backward_all([language_loss, latent_loss, l_attr_c])
        optimizer.step()
        if step % 10 == 0:
            print(step, f"{language_loss.item():.3f}")


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
