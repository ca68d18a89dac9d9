"""Memory error at the end of the first epoch: validation sums loss tensors for the scheduler.

Source: https://github.com/zoogzog/chexnet/issues/12
Reported: training ran out of GPU memory at the end of the first epoch, in validation;
`epochVal` summed `losstensorMean += losstensor` (tensors) to feed the LR scheduler, and
once `volatile=True` stopped meaning anything, every validation batch's graph was kept.
Shape: static methods of a trainer class; the validation mean tensor is returned and
handed to ReduceLROnPlateau.
"""

import torch
from torch import nn


class ChexnetTrainer:
    @staticmethod
    def epochTrain(model, dataLoader, optimizer, loss):
        model.train()
        for varInput, varTarget in dataLoader:
            lossvalue = loss(model(varInput), varTarget)
            optimizer.zero_grad()
            lossvalue.backward()
            optimizer.step()

    @staticmethod
    def epochVal(model, dataLoader, loss):
        model.eval()
        lossVal, lossValNorm, losstensorMean = 0.0, 0, 0
        with torch.no_grad():
            for varInput, varTarget in dataLoader:
                varOutput = model(varInput)
                losstensor = loss(varOutput, varTarget)
                losstensorMean += losstensor
                lossVal += losstensor.item()
                lossValNorm += 1
        return lossVal / lossValNorm, losstensorMean / lossValNorm

    @staticmethod
    def train(model, trainLoader, valLoader, epochs):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=5)
        loss = nn.BCEWithLogitsLoss()
        for epoch in range(epochs):
            ChexnetTrainer.epochTrain(model, trainLoader, optimizer, loss)
            lossVal, losstensor = ChexnetTrainer.epochVal(model, valLoader, loss)
            scheduler.step(losstensor.item())
            print(f"epoch {epoch}: val loss {lossVal:.4f}")


def main():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 14)
    )
    batch = lambda: (torch.randn(8, 1, 32, 32), torch.randint(0, 2, (8, 14)).float())  # noqa: E731
    ChexnetTrainer.train(
        model, [batch() for _ in range(12)], [batch() for _ in range(10)], epochs=3
    )


ZOO = {"expect": None}

if __name__ == "__main__":
    main()
