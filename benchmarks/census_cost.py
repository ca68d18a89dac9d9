"""What the census (memwatch/collect/census.py) costs on a program with a big heap.

Builds a heap the way a real training script has one (a model of a few hundred modules,
a dataset object with a 100,000-entry index, a list of 20,000 small records, 2,000 helper
objects with attributes, nested dicts of metrics) and times, in this process:

* one census from this frame (``Census.run``), cold (first) and warm (median of 20);
* re-measuring the holders it remembered (``CensusWatch.entries``), median of 200: the
  part that runs at every scanned step;
* training loops (a 1024-wide MLP, batch 256, and a 128-wide one, batch 32) under
  ``memwatch()``, with and without the census, CPU ms/step (median of 5 blocks each,
  interleaved).

    OMP_NUM_THREADS=1 python benchmarks/census_cost.py
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch
from torch import nn

from memwatch import memwatch
from memwatch.collect import holders_probe
from memwatch.collect.census import Census, CensusWatch
from memwatch.collect.holders import Scan


class Record:
    def __init__(self, i: int) -> None:
        self.index = i
        self.name = f"sample-{i}"
        self.weight = float(i)


class Helper:
    def __init__(self, i: int) -> None:
        self.i = i
        self.config = {"lr": 0.1, "name": str(i)}
        self.children = [Record(i), Record(i + 1)]


class Dataset:
    def __init__(self) -> None:
        self.index = {i: (i, i + 1) for i in range(100_000)}
        self.records = [Record(i) for i in range(20_000)]
        self.tensors = torch.randn(10_000, 64)


def build_heap() -> dict[str, Any]:
    model = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(150)])
    return {
        "model": model,
        "data": Dataset(),
        "helpers": [Helper(i) for i in range(2_000)],
        "metrics": {f"m{i}": {"values": [float(j) for j in range(50)]} for i in range(200)},
    }


def time_census(heap: dict[str, Any]) -> dict[str, float]:
    frame = sys._getframe()
    census = Census()
    began = time.perf_counter()
    first = census.run(frame)
    cold = time.perf_counter() - began
    warm = []
    for _ in range(20):
        warm.append(census.run(frame).cost_s)
    watch = CensusWatch()
    watch.run(frame)
    per_scan = []
    for _ in range(200):
        scan = Scan(0)
        began = time.perf_counter()
        watch.entries(scan, frame)
        per_scan.append(time.perf_counter() - began)
    return {
        "nodes": first.nodes,
        "capped": float(first.capped),
        "holders": len(first.holders),
        "cold_ms": cold * 1e3,
        "warm_ms": statistics.median(warm) * 1e3,
        "watch_holders": len(watch),
        "entries_us": statistics.median(per_scan) * 1e6,
    }


def loop_ms(steps: int, census: bool, width: int = 1024, batch: int = 256) -> float:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    opt = torch.optim.Adam(model.parameters())
    x, y = torch.randn(batch, width), torch.randint(0, 10, (batch,))
    saved = holders_probe.CensusWatch
    if not census:
        holders_probe.CensusWatch = lambda: None  # type: ignore[assignment,misc,return-value]
    try:
        with memwatch(store=False):
            began = time.process_time()  # CPU time: the shared machine's waits do not count
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            return (time.process_time() - began) / steps * 1e3
    finally:
        holders_probe.CensusWatch = saved


def main() -> None:
    heap = build_heap()
    print("heap built:", {k: type(v).__name__ for k, v in heap.items()})
    numbers = time_census(heap)
    for name, value in numbers.items():
        print(f"  {name:14} {value:10.2f}")
    for label, steps, width, batch in (("mlp-1024", 60, 1024, 256), ("tiny-mlp", 600, 128, 32)):
        on, off = [], []
        for _ in range(5):
            off.append(loop_ms(steps, False, width, batch))
            on.append(loop_ms(steps, True, width, batch))
        a, b = statistics.median(off), statistics.median(on)
        print(
            f"{label} loop with this heap: census off {a:.3f} ms/step, on {b:.3f} ms/step "
            f"(x{b / a:.3f})"
        )


if __name__ == "__main__":
    main()
