"""torch.autograd.set_detect_anomaly(True) seems to slow down the training.

Source: https://github.com/yenchenlin/nerf-pytorch/issues/42
Reported: line 2 of run_nerf_helpers.py turned anomaly detection on for the whole run,
slowing training by almost 50%; it is a debugging option (PyTorch documents that it should
be enabled only for debugging), and the maintainer turned it off.
Shape: a module-level call at the top of a helpers module, in force for the whole run.
"""

import torch
from torch import nn

torch.autograd.set_detect_anomaly(True)  # BUG: debugging switch left on for training


def get_embedder(multires):
    freqs = 2.0 ** torch.arange(multires)

    def embed(x):
        return torch.cat(
            [x, *(torch.sin(x * f) for f in freqs), *(torch.cos(x * f) for f in freqs)], -1
        )

    return embed, 3 + 6 * multires


class NeRF(nn.Module):
    def __init__(self, input_ch, W=64):
        super().__init__()
        self.pts_linears = nn.ModuleList([nn.Linear(input_ch, W), nn.Linear(W, W), nn.Linear(W, W)])
        self.output_linear = nn.Linear(W, 4)

    def forward(self, x):
        for layer in self.pts_linears:
            x = torch.relu(layer(x))
        return self.output_linear(x)


def main():
    torch.manual_seed(0)
    embed_fn, input_ch = get_embedder(4)
    model = NeRF(input_ch)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    for i in range(40):
        pts, target_rgb = torch.rand(256, 3), torch.rand(256, 3)
        raw = model(embed_fn(pts))
        img_loss = ((torch.sigmoid(raw[:, :3]) - target_rgb) ** 2).mean()
        optimizer.zero_grad()
        img_loss.backward()
        optimizer.step()
        if i % 10 == 0:
            print(i, f"{img_loss.item():.4f}")


ZOO = {
    "expect": "train-mode-smell",
    "culprit": "anomaly",
    "line": "set_detect_anomaly(True)",
}

if __name__ == "__main__":
    main()
