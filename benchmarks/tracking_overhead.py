"""Cost of tensor tracking (``memwatch(track_tensors=True)`` / ``--budget`` on CPU).

Tracking intercepts every aten op in a ``TorchDispatchMode`` (docs/measurements.md §1:
2.8-4.6 µs per op on this VM class), so it is opt-in. This measures the time per training
step of small MLPs under: no memwatch, memwatch default, memwatch with
``track_tensors=True``, and memwatch with a budget large enough never to trigger.

Method (as ``benchmarks/overhead.py``, docs/measurements.md §3): one torch thread; each
configuration wraps a block of steps and is warmed up once; rounds run every
configuration round-robin (starting one later each round); ms/step is the median over
rounds, a ratio the median over rounds of (configuration / no memwatch in the same round).

    python benchmarks/tracking_overhead.py              # ~1 minute
    python benchmarks/tracking_overhead.py --rounds 3 --steps 20   # smoke test
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

import memwatch

WORKLOADS = {
    # name: (width, depth, batch)
    "tiny-mlp 3x128 b32": (128, 3, 32),
    "small-mlp 3x512 b128": (512, 3, 128),
}


def make_step(width: int, depth: int, batch: int) -> Callable[[], None]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    model = nn.Sequential(*layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, width)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def configurations(tmp: Path) -> dict[str, Callable[[], contextlib.AbstractContextManager[object]]]:
    counter = iter(range(10**9))

    def watch(**options: object) -> Callable[[], contextlib.AbstractContextManager[object]]:
        return lambda: memwatch.memwatch(out=tmp / f"run-{next(counter)}.db", **options)

    @contextlib.contextmanager
    def nothing() -> Iterator[None]:
        yield

    return {
        "no memwatch": nothing,
        "memwatch default": watch(),
        "track_tensors=True": watch(track_tensors=True),
        "budget=1GiB (never hit)": watch(budget="1GiB"),
    }


def measure(step: Callable[[], None], steps: int, make_ctx: Callable[[], object]) -> float:
    with make_ctx():  # type: ignore[attr-defined]
        for _ in range(3):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        elapsed = time.perf_counter() - start
    return elapsed / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmpdir:
        configs = configurations(Path(tmpdir))
        names = list(configs)
        for workload, shape in WORKLOADS.items():
            step = make_step(*shape)
            for name in names:  # warm-up block per configuration
                measure(step, args.steps // 4 or 1, configs[name])
            times: dict[str, list[float]] = {n: [] for n in names}
            ratios: dict[str, list[float]] = {n: [] for n in names}
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                this_round = {n: measure(step, args.steps, configs[n]) for n in order}
                for n in names:
                    times[n].append(this_round[n])
                    ratios[n].append(this_round[n] / this_round["no memwatch"])
            print(f"\n{workload}  ({args.rounds} rounds x {args.steps} steps)")
            print(f"  {'configuration':<26} {'ms/step':>9} {'ratio':>7}")
            for n in names:
                print(
                    f"  {n:<26} {statistics.median(times[n]):>9.3f} "
                    f"{statistics.median(ratios[n]):>7.2f}"
                )


if __name__ == "__main__":
    main()
