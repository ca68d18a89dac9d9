"""Memory tests for a training step, in the three styles memwatch offers.

* the ``memwatch`` fixture: a watch around the test body, asserted on after the loop;
* the ``@pytest.mark.memwatch(...)`` marker: thresholds checked after the test returns;
* ``memwatch.testing.assert_no_leaks``: runs a step function repeatedly under a watch.

Steps end at ``optimizer.step()`` (or ``memwatch.step()``). A failure names the leak: kind,
variable, file:line, growth per step and the fix. Run: ``pytest samples/test_training_memory.py``
"""

from __future__ import annotations

import pytest
import torch

from memwatch.testing import CheckedWatch, assert_no_leaks

torch.set_num_threads(1)  # small models run faster on one thread (and CI machines are shared)


Batch = tuple[torch.Tensor, torch.Tensor]


def make_training() -> tuple[torch.nn.Module, torch.optim.Optimizer, list[Batch]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [(torch.randn(16, 32), torch.randn(16, 1)) for _ in range(4)]
    return model, optimizer, batches


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


# 1. The fixture: assert on the watch once the loop is done.
def test_training_loop_does_not_leak(memwatch: CheckedWatch) -> None:
    model, optimizer, batches = make_training()
    running_loss = 0.0
    for step in range(8):
        loss = train_step(model, optimizer, *batches[step % len(batches)])
        running_loss += loss.item()  # `running_loss += loss` would keep every step's graph
    memwatch.assert_no_leaks(warmup=2, tolerance="4KiB")
    memwatch.assert_peak_below("16MiB")


# 2. The marker: limits for the whole test (defaults: warmup=3, 64KiB/step, graph leaks).
@pytest.mark.memwatch(max_step_growth="4KiB", max_peak="16MiB", warmup=2)
def test_training_memory_stays_flat() -> None:
    model, optimizer, batches = make_training()
    for step in range(8):
        train_step(model, optimizer, *batches[step % len(batches)])


# 3. A step function, called `steps` times; a step is marked after each call.
def test_step_function_does_not_leak() -> None:
    model, optimizer, batches = make_training()
    assert_no_leaks(lambda: train_step(model, optimizer, *batches[0]), steps=8, warmup=2)


# What memwatch catches: summing loss tensors keeps every step's autograd graph alive.
# (strict xfail: this test fails if the leak goes unnoticed)
@pytest.mark.xfail(strict=True, reason="graph-accumulation: `total` keeps every step's graph")
@pytest.mark.memwatch
def test_summing_loss_tensors_is_caught() -> None:
    model, optimizer, batches = make_training()
    total = 0
    for step in range(8):
        loss = train_step(model, optimizer, *batches[step % len(batches)])
        total = total + loss
