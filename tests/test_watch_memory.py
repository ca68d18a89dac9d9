"""memwatch's own memory must not grow with the user's leak (issues 11 and 15).

A loop that keeps every step's graph (``total += loss``) grows by what autograd keeps per
step. Whatever memwatch attaches to that graph (objects in a node's ``metadata``, hooks,
saved-tensor records) is kept by the user's leak too and multiplies it: before this was
fixed, a token in each root node's ``metadata`` made torch build per-node metadata that
took the leak from ~6 KiB to ~16 KiB per step.

Checked here without timing or RSS: after the watch has ended and been dropped, nothing
memwatch created is still alive because the leaked graph holds it (dropping the graph
frees no memwatch object). The RSS ratio itself (with and without the watch, fresh
processes, thousands of steps) is measured by ``benchmarks/overhead.py --sections
leak-memory``: over a few hundred steps it varies by ±10% with the analysis passes a
loaded machine gets, too much for a test.
"""

from __future__ import annotations

import gc
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from memwatch import memwatch

LEAK_STEPS = 300


def _leaking_loop(steps: int, watch: AbstractContextManager[Any]) -> Any:
    """``total += loss`` for ``steps`` steps; the leaked total (graph and all)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 32), torch.randint(0, 4, (8,))
    total: Any = 0.0
    with watch:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            total += loss  # the user's bug: keeps every step's graph
            opt.step()
    return total


def _memwatch_objects() -> int:
    """Live gc-tracked objects whose class is defined by memwatch."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if _defined_by_memwatch(type(obj)))


def _defined_by_memwatch(kind: type) -> bool:
    module = kind.__dict__.get("__module__")
    return isinstance(module, str) and module.startswith("memwatch.")


def test_dropping_a_leaked_graph_frees_nothing_of_memwatchs() -> None:
    # GIVEN a loop that leaked its graph for many steps under a watch that has ended
    total = _leaking_loop(LEAK_STEPS, memwatch(store=False))
    before = _memwatch_objects()
    # WHEN the user's leaked graph is dropped
    del total
    after = _memwatch_objects()
    # THEN no memwatch object was kept alive by it
    assert before - after == 0, f"the leaked graph held {before - after} memwatch objects"
