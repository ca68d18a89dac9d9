"""memwatch's own memory must not grow with the user's leak (issues 11 and 15).

A loop that keeps every step's graph (``total += loss``) grows by what autograd keeps per
step. Whatever memwatch attaches to that graph (objects in a node's ``metadata``, hooks,
saved-tensor records) is kept by the user's leak too and multiplies it: before this was
fixed, a token in each root node's ``metadata`` made torch build per-node metadata that
took the leak from ~6 KiB to ~16 KiB per step.

Two views, neither timed:

* after the watch has ended and been dropped, nothing memwatch created is still alive
  because the leaked graph holds it (dropping the graph frees no memwatch object);
* the bytes the C allocator hands out per leaked step (``mallinfo2``: autograd nodes and
  their metadata live there, not in Python's heap) are about the same with and without
  the watch, measured in this process one after the other.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psutil
import pytest
import torch
from torch import nn

from memwatch import memwatch

LEAK_STEPS = 300


def _leaking_loop(steps: int, watch: AbstractContextManager[Any], after_warmup: Callable[[], None] | None = None) -> Any:
    """``total += loss`` for ``steps`` steps; the leaked total (graph and all)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 32), torch.randint(0, 4, (8,))
    total: Any = 0.0
    with watch:
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            total += loss  # the user's bug: keeps every step's graph
            opt.step()
            if i == 20 and after_warmup is not None:
                after_warmup()
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


def _anonymous_memory() -> Callable[[], int] | None:
    """The process's anonymous resident bytes (heap, not mapped files), where known.

    File-backed pages are left out: code paged in the first time memwatch runs a path
    would otherwise read as growth.
    """
    process = psutil.Process()
    if not hasattr(process.memory_info(), "shared"):  # Linux only
        return None

    def read() -> int:
        info = process.memory_info()
        return int(info.rss - info.shared)

    return read


def _growth_per_step(watch: AbstractContextManager[Any], read: Callable[[], int]) -> float:
    marks: list[int] = []

    def mark() -> None:
        gc.collect()
        marks.append(read())

    total = _leaking_loop(LEAK_STEPS + 21, watch, mark)
    gc.collect()
    grown = read() - marks[0]
    del total
    return grown / LEAK_STEPS


def test_the_watch_adds_little_to_what_a_leak_keeps_per_step() -> None:
    read = _anonymous_memory()
    if read is None:
        pytest.skip("needs the anonymous resident size (Linux)")
    # GIVEN the same leaking loop run without and with a watch (in-memory, no run file)
    _growth_per_step(nullcontext(), read)  # first run: allocator and lazy state
    plain = _growth_per_step(nullcontext(), read)
    watched = _growth_per_step(memwatch(store=False), read)
    # THEN the watch adds at most 15% to the memory the leak takes per step
    print(f"plain {plain:.0f} B/step, watched {watched:.0f} B/step")
    assert plain > 1000, f"the leak should keep autograd nodes: {plain:.0f} B/step"
    assert watched <= plain * 1.15, f"{watched:.0f} B/step watched vs {plain:.0f} B/step plain"
