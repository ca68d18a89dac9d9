"""Keep the best model: deepcopy the state_dict whenever validation accuracy improves.

Pattern: https://pytorch.org/tutorials/beginner/transfer_learning_tutorial.html
Reported: the tutorial's `train_model` keeps `best_model_wts = copy.deepcopy(model.state_dict())`
each time the validation accuracy improves and loads it at the end. Looks risky (a full copy
of the weights made again and again during training, kept across steps) but each copy
replaces the previous one, so one copy is alive at a time and none carries a graph.
Shape: a `train_model()` function with train/val phases per short epoch, `best_acc` a
float, `best_model_wts` rebound on improvement, `model.load_state_dict(best_model_wts)`.
"""

import copy

import torch
from torch import nn

ZOO = {"expect": None}


def train_model(model, criterion, optimizer, scheduler, num_epochs: int) -> nn.Module:
    best_model_wts = copy.deepcopy(model.state_dict())
    best_acc = 0.0
    val_x, val_y = torch.randn(128, 64), torch.randint(0, 5, (128,))
    for epoch in range(num_epochs):
        model.train()
        for _ in range(5):
            x, y = torch.randn(32, 64), torch.randint(0, 5, (32,))
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        with torch.no_grad():
            epoch_acc = (model(val_x).argmax(1) == val_y).float().mean().item()
        if epoch_acc > best_acc:
            best_acc = epoch_acc
            best_model_wts = copy.deepcopy(model.state_dict())
        print(f"epoch {epoch}: loss {loss.item():.4f} val acc {epoch_acc:.4f}")
    model.load_state_dict(best_model_wts)
    return model


def main() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 5))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.1)
    train_model(model, nn.CrossEntropyLoss(), optimizer, scheduler, num_epochs=12)


if __name__ == "__main__":
    main()
