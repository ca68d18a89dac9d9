"""VAE training: `.zero_grad()` outside the accumulation `if` erases the accumulated gradients.

Source: https://github.com/gaozhihan/PreDiff/issues/32
Reported: the optimizer step sat inside `if (batch_idx + 1) % accumulate == 0:` but
`zero_grad()` was called outside that condition, on every batch, so the accumulated gradient
was erased; the maintainers confirmed and fixed it.
Shape: every-k-steps optimizer step in a trainer class (`self.optimizer`), two optimizers
(autoencoder and discriminator) like the reported VAE script.
"""

import torch
from torch import nn

ZOO = {
    "expect": "grad-reset-before-step",
    "culprit": "optimizer",
    "line": "self.opt_ae.zero_grad()",
    "frameworks": [],
}


class VAETrainer:
    def __init__(self, accumulate: int) -> None:
        self.accumulate = accumulate
        self.encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 16))
        self.decoder = nn.Sequential(nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 64))
        self.disc = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
        self.opt_ae = torch.optim.Adam(
            [*self.encoder.parameters(), *self.decoder.parameters()], lr=1e-3
        )
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=1e-3)

    def training_batch(self, batch_idx: int, x: torch.Tensor) -> float:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = self.decoder(z)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean()
        loss_ae = (
            nn.functional.mse_loss(recon, x) + 1e-3 * kl - 1e-2 * self.disc(recon).mean()
        ) / self.accumulate
        loss_ae.backward()
        if (batch_idx + 1) % self.accumulate == 0:
            self.opt_ae.step()
        self.opt_ae.zero_grad()  # BUG: runs every batch, not only after the step
        loss_d = (self.disc(recon.detach()).mean() - self.disc(x).mean()) / self.accumulate
        loss_d.backward()
        if (batch_idx + 1) % self.accumulate == 0:
            self.opt_disc.step()
            self.opt_disc.zero_grad()
        return loss_ae.item()


def main() -> None:
    torch.manual_seed(0)
    trainer = VAETrainer(accumulate=4)
    for batch_idx in range(120):
        loss = trainer.training_batch(batch_idx, torch.randn(32, 64))
        if batch_idx % 40 == 0:
            print(f"batch {batch_idx}: loss {loss:.4f}")


if __name__ == "__main__":
    main()
