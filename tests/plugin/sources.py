"""Inner test modules for the plugin's tests: a tiny training loop that leaks on request."""

from __future__ import annotations

import textwrap

#: The top of every inner test module: a tiny model, one torch thread, synthetic data, and
#: a training step that can be made to leak in the ways the tests need.
PRELUDE = '''
import pytest
import torch

torch.set_num_threads(1)


def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.01), torch.randn(32, 64)


def train(steps, cache_bytes=0):
    """Train ``steps`` steps; keep ``cache_bytes`` more of plain tensors (no graph) per step."""
    model, opt, x = make()
    cache = []
    for _ in range(steps):
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if cache_bytes:
            cache.append(torch.ones(cache_bytes // 4))
    return cache
'''


def training_module(body: str) -> str:
    """An inner test module: the prelude, then ``body`` (dedented)."""
    # pytester strips leading blank lines; so do we, so that line_of() matches the file.
    return (PRELUDE + "\n\n" + textwrap.dedent(body)).strip() + "\n"


def line_of(source: str, needle: str) -> int:
    """The 1-based line of the first line of ``source`` containing ``needle``."""
    for number, line in enumerate(source.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the module")
