"""ReduceLROnPlateau stepped with the validation loss as a Python float, early stopping on it.

Pattern: https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html
(the tensor-aliasing pitfall: https://github.com/pytorch/pytorch/issues/16364)
Reported: the scheduler keeps the best metric it has seen; fed a float (`val_loss.item()`,
computed under no_grad) it keeps a number, and the early-stopping counter beside it keeps
floats too. Looks risky (scheduler and early stopper holding "the best loss" across the
whole run, validation every few steps) but nothing with a graph is kept.
Shape: validation every 5 steps under `torch.no_grad()` with `model.eval()`,
`scheduler.step(val_loss)` with a float, a patience counter and `best` float.
"""

import torch
from torch import nn

ZOO = {"expect": None}


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        val_loss = nn.functional.cross_entropy(model(x), y).item()
    model.train()
    return val_loss


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    val_x, val_y = torch.randn(256, 32), torch.randint(0, 4, (256,))
    best, bad_evals, patience = float("inf"), 0, 6
    for step in range(1, 61):
        x, y = torch.randn(64, 32), torch.randint(0, 4, (64,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            val_loss = evaluate(model, val_x, val_y)
            scheduler.step(val_loss)
            if val_loss < best - 1e-4:
                best, bad_evals = val_loss, 0
            else:
                bad_evals += 1
            print(f"step {step}: val {val_loss:.4f} lr {optimizer.param_groups[0]['lr']:.4f}")
            if bad_evals >= patience:
                print("early stop")
                break


if __name__ == "__main__":
    main()
