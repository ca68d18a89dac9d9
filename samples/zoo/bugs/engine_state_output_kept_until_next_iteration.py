"""Remove extra memory usage in batch processing: the engine keeps the last step's output.

Source: https://github.com/pytorch/ignite/pull/476
Reported: the output of the previous process_function call (loss, y_pred, y) was still
referenced by `engine.state.output` when process_function ran again, so two steps'
outputs (and the graph reachable from the loss) were alive at the peak; with large
segmentation outputs this caused out of memory at a smaller batch size than necessary.
Shape: an Engine object with a State attribute and event handlers (callbacks).
"""

import torch
from torch import nn


class State:
    def __init__(self):
        self.iteration = 0
        self.output = None


class Engine:
    def __init__(self, process_function):
        self._process_function = process_function
        self.state = State()
        self._handlers = []

    def add_event_handler(self, handler):
        self._handlers.append(handler)

    def run(self, data):
        for batch in data:
            self.state.iteration += 1
            # BUG: the previous output stays alive while the next process_function runs
            self.state.output = self._process_function(self, batch)
            for handler in self._handlers:
                handler(self)


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = nn.CrossEntropyLoss()

    def update(engine, batch):
        x, y = batch
        y_pred = model(x)
        loss = criterion(y_pred, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss, y_pred, y

    def log_loss(engine):
        if engine.state.iteration % 10 == 0:
            print(engine.state.iteration, f"{engine.state.output[0].item():.4f}")

    trainer = Engine(update)
    trainer.add_event_handler(log_loss)
    data = [(torch.randn(4, 3, 32, 32), torch.randint(0, 8, (4, 32, 32))) for _ in range(40)]
    trainer.run(data)


ZOO = {
    "expect": "lingering-step-locals",
    "also_ok": ["graph-kept-across-step"],
    "culprit": "output",
    "line": "self.state.output = self._process_function",
}

if __name__ == "__main__":
    main()
