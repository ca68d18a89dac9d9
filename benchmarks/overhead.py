"""Overhead benchmarks: is memwatch cheap enough to leave on?

Measures the time per training step of three workloads under five configurations (no
tool, memwatch default, memwatch deep, ``torch.profiler`` with memory profiling, a
gc-based tensor census every step), plus the run-file bytes per step, memwatch's own
memory over a long run, the overhead once the in-memory window is full, and how many
steps a leak takes to be found.

Method (docs/measurements.md §3): one torch thread; every configuration wraps a *block* of
steps (the tool is entered once per block; the census runs every step by design); each
configuration is warmed up with one block; then rounds run every configuration once,
round-robin, starting one configuration later each round. ms/step is the median over
rounds; a ratio is the median over rounds of (configuration / no tool *in the same
round*), so slow drifts of a shared machine cancel. Only the steps are timed: entering
and leaving a tool is reported apart ("enter+exit").

    python benchmarks/overhead.py --json overhead.json  # everything, ~7-8 min on a 2-core VM
    python benchmarks/overhead.py --quick --json x.json # tiny sizes, no warm-up (smoke test)
    python benchmarks/overhead.py --sections overhead --workloads tiny-mlp --rounds 15
"""

from __future__ import annotations

import os

# Before torch is imported: with two OpenMP threads a shared 2-core VM showed 10x step
# spikes (docs/measurements.md §2), which no interleaving can cancel.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import contextlib
import datetime
import gc
import itertools
import json
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

torch.set_num_threads(1)

import memwatch as memwatch_pkg  # noqa: E402
from memwatch import memwatch  # noqa: E402
from memwatch.session import WINDOW  # noqa: E402

SCHEMA = "memwatch.bench.overhead/1"
REPO = Path(__file__).resolve().parents[1]
MEMWATCH_DIR = Path(memwatch_pkg.__file__).resolve().parent

#: Targets for memwatch's default mode, as ratios against no tool (issue 7).
TARGETS: dict[str, float] = {
    "tiny-mlp": 1.10,
    "mlp-1024": 1.03,
    "convnet": 1.03,
    "many-forwards": 1.10,  # issue 15
    "bptt": 1.05,  # issue 15
}
TARGET_CONFIG = "memwatch"
#: A second block of the bare step per round: the spread of its ratios is the noise floor.
NOISE_CONFIG = "none-again"
LEAK_KIND = "graph-accumulation"

Step = Callable[[], None]


# -- workloads ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    steps: int  # steps per timed block
    census_steps: int  # steps per block of the gc census (~35x slower on the tiny MLP)
    build: Callable[[bool, torch.device], Step]  # (quick, device) -> one training step


def _mlp_step(width: int, batch: int, device: torch.device) -> Step:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, width, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def _tiny_mlp(quick: bool, device: torch.device) -> Step:
    return _mlp_step(16, 4, device) if quick else _mlp_step(128, 32, device)


def _big_mlp(quick: bool, device: torch.device) -> Step:
    return _mlp_step(64, 16, device) if quick else _mlp_step(1024, 256, device)


def _convnet(quick: bool, device: torch.device) -> Step:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    side, batch = (8, 2) if quick else (32, 32)
    x = torch.randn(batch, 3, side, side, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def _many_forwards(quick: bool, device: torch.device) -> Step:
    """REINFORCE-style: an episode of batch-1 policy forwards, one optimizer step.

    pytorch/examples ``reinforcement_learning/reinforce.py`` makes ~140,000 such forwards;
    memwatch's per-forward cost (module hooks) shows here, not its per-step cost.
    """
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 128), nn.Dropout(0.6), nn.ReLU(), nn.Linear(128, 2)).to(
        device
    )
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    forwards = 10 if quick else 200
    states = torch.randn(forwards, 1, 4, device=device)

    def step() -> None:
        log_probs = []
        for t in range(forwards):
            probs = F.softmax(policy(states[t]), dim=1)
            log_probs.append(torch.log(probs[0, t % 2]))
        loss = -torch.stack(log_probs).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _bptt(quick: bool, device: torch.device) -> Step:
    """time_sequence_prediction-style: two LSTMCells unrolled over a long sequence.

    Thousands of small tensors are saved for backward per step: memwatch's saved-tensor
    hooks run once for each.
    """
    torch.manual_seed(0)
    cell1, cell2, head = nn.LSTMCell(1, 51), nn.LSTMCell(51, 51), nn.Linear(51, 1)
    model = nn.ModuleList([cell1, cell2, head]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    length = 20 if quick else 300
    series = torch.sin(torch.arange(length + 1, dtype=torch.float32) / 8).repeat(3, 1).to(device)

    def step() -> None:
        h1 = c1 = h2 = c2 = torch.zeros(3, 51, device=device)
        outputs = []
        for t in range(length):
            h1, c1 = cell1(series[:, t : t + 1], (h1, c1))
            h2, c2 = cell2(h1, (h2, c2))
            outputs.append(head(h2))
        loss = F.mse_loss(torch.cat(outputs, dim=1), series[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("tiny-mlp", "MLP 3x128, batch 32, Adam (~0.5 ms/step)", 400, 20, _tiny_mlp),
        Workload("mlp-1024", "MLP 3x1024, batch 256, Adam (~20 ms/step)", 30, 10, _big_mlp),
        Workload(
            "convnet",
            "conv32-BN-ReLU-conv64-ReLU-pool-conv64-ReLU-GAP-fc, batch 32x3x32x32, SGD",
            15,
            8,
            _convnet,
        ),
        Workload(
            "many-forwards",
            "episode of 200 batch-1 forwards of a 4-128-2 policy per Adam step (REINFORCE)",
            32,
            2,
            _many_forwards,
        ),
        Workload(
            "bptt",
            "2 LSTMCell(51) + Linear unrolled over 300 steps, batch 3, SGD (~5,000 saved tensors)",
            32,
            2,
            _bptt,
        ),
    )
}


# -- configurations ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    name: str
    label: str
    description: str
    enter: Callable[[Path], contextlib.AbstractContextManager[Any]]  # run-file path -> context
    per_step: Callable[[], Callable[[], object]] | None = None  # factory of a per-step call
    # called with what ``enter`` gave once the settle steps ran (before the timed steps)
    after_settle: Callable[[Any], None] | None = None


def _deep_options() -> tuple[dict[str, Any], str]:
    """The most expensive memwatch options this version accepts, and how to say it."""
    try:
        memwatch(analysis="deep", track_tensors=True, store=False)
    except TypeError:
        return {"analysis": "deep"}, 'memwatch(analysis="deep") (track_tensors not available)'
    return {"analysis": "deep", "track_tensors": True}, (
        'memwatch(analysis="deep", track_tensors=True)'
    )


DEEP_OPTIONS, DEEP_USED = _deep_options()


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Kineto prints ``USDT: profiler_start/stop`` and allocator warnings on fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _profiler(device: torch.device) -> Iterator[None]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with _stderr_silenced(), profile(activities=activities, profile_memory=True):
        yield


def tensor_census() -> Callable[[], int]:
    """pytorch_memlab MemReporter's approach: every tensor ``gc`` knows, storage bytes summed.

    Types are checked once and cached (``isinstance`` costs twice as much and has side
    effects on proxy objects, docs/measurements.md §2); storages are counted once however
    many views.
    """
    tensor_base: type = getattr(torch._C, "TensorBase", torch.Tensor)
    is_tensor_type: dict[type, bool] = {}

    def census() -> int:
        seen: set[int] = set()
        total = 0
        for obj in gc.get_objects():
            kind = type(obj)
            hit = is_tensor_type.get(kind)
            if hit is None:
                hit = is_tensor_type[kind] = issubclass(kind, tensor_base)
            if not hit:
                continue
            try:
                storage = obj.untyped_storage()
                ptr = storage.data_ptr()
                if ptr in seen:
                    continue
                seen.add(ptr)
                total += storage.nbytes()
            except Exception:  # sparse, meta, fake tensors
                continue
        return total

    return census


def _switch_off(watch: Any) -> None:
    """``memwatch-idle``: every hook of the watch returns at once from now on (its
    ``Tracker.off``, which the watch sets itself when it stops or after a fork)."""
    watch._tracker.off = True  # an AttributeError if that changes: never time the full watch


@contextlib.contextmanager
def _idle_watch(path: Path) -> Iterator[Any]:
    """A watch for ``memwatch-idle``: switched back on before it stops, since a tracker
    that is off has nothing left to stop and would leave its hooks installed."""
    with memwatch(out=path, force=True) as watch:
        try:
            yield watch
        finally:
            watch._tracker.off = False


def make_configs(device: torch.device) -> dict[str, Config]:
    configs = (
        Config("none", "no tool", "the training step alone", lambda path: contextlib.nullcontext()),
        Config(
            NOISE_CONFIG,
            "no tool, again",
            "the training step alone, a second block per round: its ratio against no tool is "
            "what the machine's noise does to a ratio (an A/A control)",
            lambda path: contextlib.nullcontext(),
        ),
        Config(
            "memwatch",
            "memwatch",
            "`with memwatch(out=FILE):` around the block (default analysis)",
            lambda path: memwatch(out=path, force=True),
        ),
        Config(
            "memwatch-idle",
            "memwatch idle",
            "`with memwatch(out=FILE):` around the block, switched off after the settle "
            "steps (`Tracker.off`): every hook stays installed and returns at once, so this "
            "is the floor a watch built on these hooks pays before it does any work "
            "(a diagnostic, not a mode: needs --settle > 0)",
            _idle_watch,
            after_settle=_switch_off,
        ),
        Config(
            "memwatch-deep",
            "memwatch deep",
            f"`{DEEP_USED}` around the block",
            lambda path: memwatch(out=path, force=True, **DEEP_OPTIONS),
        ),
        Config(
            "profiler",
            "torch.profiler",
            "`torch.profiler.profile(profile_memory=True)` around the block",
            lambda path: _profiler(device),
        ),
        Config(
            "gc-census",
            "gc census",
            "gc.get_objects() tensor census after every step (pytorch_memlab MemReporter)",
            lambda path: contextlib.nullcontext(),
            per_step=tensor_census,
        ),
    )
    return {c.name: c for c in configs}


# -- timing ------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_block(
    step: Step, config: Config, steps: int, path: Path, device: torch.device, settle: int = 0
) -> tuple[float, float, float, float]:
    """(wall s/step, process CPU s/step, wall s to enter and leave the tool, wall s/step of
    the first ``settle`` steps) for one block.

    The first ``settle`` steps after entering the tool are timed apart (memwatch measures
    everything on a run's first steps and watches every module call while it learns the
    root modules: a one-time cost of a long run, not its per-step cost). CPU time counts
    only this process, so it stays meaningful on a shared machine where wall time also
    counts the time spent waiting for a core.
    """
    per_step = config.per_step() if config.per_step is not None else None
    gc.collect(1)  # young garbage of the last block; a full collect costs ~0.2 s here
    _sync(device)
    with contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        entered = stack.enter_context(config.enter(path))
        ts = time.perf_counter()
        for _ in range(settle):
            step()
            if per_step is not None:
                per_step()
        _sync(device)
        if config.after_settle is not None:
            config.after_settle(entered)
        c1 = time.process_time()
        t1 = time.perf_counter()
        if per_step is None:
            for _ in range(steps):
                step()
        else:
            for _ in range(steps):
                step()
                per_step()
        _sync(device)
        t2 = time.perf_counter()
        c2 = time.process_time()
    t3 = time.perf_counter()
    settle_s = (t1 - ts) / settle if settle else 0.0
    return (t2 - t1) / steps, (c2 - c1) / steps, (ts - t0) + (t3 - t2), settle_s


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def bench_overhead(
    workloads: list[Workload],
    configs: list[Config],
    rounds: int,
    steps: int | None,
    census_steps: int | None,
    quick: bool,
    device: torch.device,
    tmp: Path,
    settle: int = 0,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for workload in workloads:
        step = workload.build(quick, device)
        n_steps = steps or workload.steps
        n_census = census_steps or min(n_steps, workload.census_steps)

        def block_steps(config: Config, n_steps: int = n_steps, n_census: int = n_census) -> int:
            return n_census if config.per_step is not None else n_steps

        for _ in range(3):  # first calls: allocator, autograd and optimizer state
            step()
        if not quick:  # a full collection costs ~0.3 s with torch._dynamo imported
            gc.collect()
            for config in configs:  # warm-up: one block of each
                run_block(
                    step, config, block_steps(config), tmp / f"{config.name}.db", device, settle
                )
        ms: dict[str, list[float]] = {c.name: [] for c in configs}
        settle_ms: dict[str, list[float]] = {c.name: [] for c in configs}
        cpu: dict[str, list[float]] = {c.name: [] for c in configs}
        enter_exit: dict[str, list[float]] = {c.name: [] for c in configs}
        for r in range(rounds):
            shift = r % len(configs)
            for config in configs[shift:] + configs[:shift]:
                wall_s, cpu_s, fixed_s, settle_s = run_block(
                    step, config, block_steps(config), tmp / f"{config.name}.db", device, settle
                )
                settle_ms[config.name].append(settle_s * 1e3)
                ms[config.name].append(wall_s * 1e3)
                cpu[config.name].append(cpu_s * 1e3)
                enter_exit[config.name].append(fixed_s * 1e3)
        entry: dict[str, Any] = {
            "description": workload.description,
            "steps_per_block": n_steps,
            "settle_steps": settle,
            "census_steps_per_block": n_census,
            "configs": {},
        }
        for config in configs:
            values, cpu_values = ms[config.name], cpu[config.name]
            ratios = [v / b for v, b in zip(values, ms["none"])]
            cpu_ratios = [v / b if b > 0 else float("nan") for v, b in zip(cpu_values, cpu["none"])]
            added_us = [(v - b) * 1e3 for v, b in zip(values, ms["none"])]
            q1, q3 = _quartiles(ratios)
            entry["configs"][config.name] = {
                "ms_per_step": _median(values),
                "ratio": _median(ratios),
                "ratio_q1": q1,
                "ratio_q3": q3,
                "added_us_per_step": _median(added_us),
                "cpu_ms_per_step": _median(cpu_values),
                "cpu_ratio": _median(cpu_ratios),
                "enter_exit_ms": _median(enter_exit[config.name]),
                "settle_ms_per_step": _median(settle_ms[config.name]) if settle else None,
                "settle_ratio": _median(
                    [v / b for v, b in zip(settle_ms[config.name], settle_ms["none"]) if b > 0]
                )
                if settle
                else None,
                "steps_per_block": block_steps(config),
                "ms_rounds": values,
                "ratio_rounds": ratios,
                "cpu_ms_rounds": cpu_values,
            }
        results[workload.name] = entry
        del step
        gc.collect()
    return results


def check_targets(overhead: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for name, limit in TARGETS.items():
        configs = overhead.get(name, {}).get("configs", {})
        if TARGET_CONFIG not in configs:
            continue
        result = configs[TARGET_CONFIG]
        noise = configs.get(NOISE_CONFIG)
        checks.append(
            {
                "noise_ratio": noise["ratio"] if noise else None,
                "noise_q1": noise["ratio_q1"] if noise else None,
                "noise_q3": noise["ratio_q3"] if noise else None,
                "workload": name,
                "config": TARGET_CONFIG,
                "max_ratio": limit,
                "ratio": result["ratio"],
                "ratio_q1": result["ratio_q1"],
                "ratio_q3": result["ratio_q3"],
                "added_us_per_step": result["added_us_per_step"],
                "cpu_ratio": result["cpu_ratio"],
                "status": "PASS" if result["ratio"] <= limit else "MISS",
            }
        )
    return checks


# -- run file size -----------------------------------------------------------------------------
def _file_bytes(path: Path) -> int:
    return sum(
        Path(f"{path}{suffix}").stat().st_size
        for suffix in ("", "-wal", "-shm")
        if Path(f"{path}{suffix}").exists()
    )


def _row_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for table in ("steps", "events", "holders", "findings"):
            try:
                counts[table] = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            except sqlite3.Error:
                pass
    finally:
        conn.close()
    return counts


def bench_run_file(n_steps: int, quick: bool, device: torch.device, tmp: Path) -> dict[str, Any]:
    """Size of the run file after ``n_steps`` tiny-MLP steps, closed, per step."""
    step = _tiny_mlp(quick, device)
    for _ in range(3):
        step()
    empty = tmp / "empty.db"
    with memwatch(out=empty, force=True):
        pass
    empty_bytes = _file_bytes(empty)
    result: dict[str, Any] = {"workload": "tiny-mlp", "steps": n_steps, "empty_bytes": empty_bytes}
    for mode, options in (("default", {}), ("deep", DEEP_OPTIONS)):
        path = tmp / f"size-{mode}.db"
        with memwatch(out=path, force=True, **options):
            for _ in range(n_steps):
                step()
        size = _file_bytes(path)
        result[mode] = {
            "bytes": size,
            "bytes_per_step": size / n_steps,
            "marginal_bytes_per_step": (size - empty_bytes) / n_steps,
            "rows": _row_counts(path),
        }
    return result


# -- memwatch's own memory over a long run -----------------------------------------------------
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except Exception:
            return None


def _memwatch_traced(limit: int = 5) -> tuple[int, list[str]]:
    """Bytes traced to memwatch's files, and the lines holding the most of them."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, str(MEMWATCH_DIR / "*"))]
    )
    stats = snapshot.statistics("lineno")
    top = [
        f"{Path(s.traceback[0].filename).relative_to(MEMWATCH_DIR.parent)}:"
        f"{s.traceback[0].lineno} {s.size:,} B in {s.count:,} blocks"
        for s in stats[:limit]
    ]
    return sum(s.size for s in stats), top


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


#: Growth over the measured span (by the fitted slope) that still counts as bounded.
MAX_BLOCK_GROWTH = 5000  # Python memory blocks: catches one object kept every ~20 steps
MAX_RSS_GROWTH = 8 * 2**20


def bench_memory(
    n_steps: int, use_tracemalloc: bool, device: torch.device, tmp: Path
) -> dict[str, Any]:
    """memwatch's memory from step n/10 (its window is full) to step n of a cheap loop.

    The step is ``Linear(4, 4)`` forward, ``.sum().backward()`` and ``mw.step()``: nothing
    in it keeps memory, so what grows is memwatch's. Ten checkpoints read RSS and
    ``sys.getallocatedblocks()`` (live Python memory blocks, free to read) after a full
    collection; a leak shows as a slope. ``--tracemalloc`` also traces from the first
    checkpoint on and names the memwatch lines still holding memory at the end (it makes
    the steps several times slower).
    """
    torch.manual_seed(0)
    layer = nn.Linear(4, 4).to(device)
    x = torch.randn(2, 4, device=device)
    first = max(1, n_steps // 10)
    marks = sorted({first + (n_steps - first) * k // 9 for k in range(10)})
    points: list[dict[str, Any]] = []
    traced: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        with memwatch(out=tmp / "memory.db", force=True) as mw:
            for i in range(1, n_steps + 1):
                layer(x).sum().backward()
                mw.step()
                if i in marks:
                    gc.collect()
                    points.append(
                        {
                            "step": i,
                            "rss_bytes": _rss_bytes(),
                            "python_blocks": sys.getallocatedblocks(),
                            "steps_in_memory": len(mw.steps),
                            "events_in_memory": len(mw.events),
                        }
                    )
                    if use_tracemalloc and i == first:
                        tracemalloc.start(1)
            if use_tracemalloc:
                size, top = _memwatch_traced()
                traced = {
                    "memwatch_bytes_alive_from_after_first": size,
                    "top_lines": top,
                    "peak_traced_bytes": tracemalloc.get_traced_memory()[1],
                }
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    steps = [p["step"] for p in points]
    span = steps[-1] - steps[0]
    block_growth = _slope(steps, [p["python_blocks"] for p in points]) * span
    rss = [p["rss_bytes"] for p in points]
    rss_growth = _slope(steps, rss) * span if None not in rss else None
    return {
        "steps": n_steps,
        "first_checkpoint": first,
        "points": points,
        "python_block_growth": round(block_growth),
        "rss_growth_bytes": None if rss_growth is None else round(rss_growth),
        "tracemalloc": traced or None,
        "us_per_step": elapsed / n_steps * 1e6,
        "bounded": block_growth < MAX_BLOCK_GROWTH
        and (rss_growth is None or rss_growth < MAX_RSS_GROWTH),
        "criterion": f"fitted growth from step {first} to {n_steps}: < {MAX_BLOCK_GROWTH} "
        f"Python blocks and < {MAX_RSS_GROWTH // 2**20} MiB RSS",
    }


# -- overhead once the window is full ----------------------------------------------------------
def _watch_window() -> int:
    """The number of steps a watch keeps in memory (``Watch(window=...)``'s default)."""
    import inspect

    try:
        default = inspect.signature(memwatch_pkg.Watch).parameters["window"].default
        return int(default)
    except (KeyError, TypeError, ValueError):
        return 4096


def bench_long_run(
    rounds: int, fill: int | None, measure: int, quick: bool, device: torch.device, tmp: Path
) -> dict[str, Any]:
    """Tiny MLP: a watch's first and last ``measure`` steps out of ``fill``, vs no tool.

    The overhead table uses a fresh watch per block, so its in-memory window (the last
    ``window`` steps, which the detectors re-read every few steps) is never full; this
    measures the cost once it is. Each round is one watch followed by a no-tool block; a
    watch's ratio is against the mean of the no-tool blocks on either side of it.
    """
    window = _watch_window()
    fill = fill or window + measure + 100
    step = _tiny_mlp(quick, device)

    def timed(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        _sync(device)
        return (time.perf_counter() - t0) / n * 1e3

    for _ in range(3):
        step()
    gc.collect(1)
    base = [timed(measure)]
    fresh: list[float] = []
    full: list[float] = []
    for _ in range(rounds):
        with memwatch(out=tmp / "long.db", force=True):
            fresh.append(timed(measure))
            for _ in range(fill - 2 * measure):
                step()
            full.append(timed(measure))
        gc.collect(1)
        base.append(timed(measure))
    around = [(a + b) / 2 for a, b in itertools.pairwise(base)]
    return {
        "workload": "tiny-mlp",
        "rounds": rounds,
        "window": window,
        "fill_steps": fill,
        "measured_steps": measure,
        "window_full_when_measured": fill - measure >= window,
        "ms_per_step_none": _median(base),
        "ms_per_step_fresh": _median(fresh),
        "ms_per_step_full": _median(full),
        "ratio_fresh": _median([f / b for f, b in zip(fresh, around)]),
        "ratio_full": _median([f / b for f, b in zip(full, around)]),
    }


# -- whole runs --------------------------------------------------------------------------------
#: Steps of one whole run per workload (a run of seconds: start-up and steady state both in).
WHOLE_RUN_STEPS = {
    "tiny-mlp": 3000,
    "mlp-1024": 60,
    "convnet": 40,
    "many-forwards": 300,
    "bptt": 100,
}


def bench_whole_run(
    workloads: list[Workload],
    configs: dict[str, Config],
    rounds: int,
    quick: bool,
    device: torch.device,
    tmp: Path,
) -> dict[str, Any]:
    """Whole runs: one watch from a run's first step to its last (entering and leaving it
    included) against the same steps without a tool, in turn, ``rounds`` times.

    The overhead table times blocks of a fresh watch's steps 17 to 48: the start of a run,
    where memwatch scans, counts and takes censuses most often while it learns the loop.
    This is what a whole run pays, start and steady state together, as issue 15 measured
    the RL and sequence-prediction examples (their wall time with and without memwatch).
    """
    results: dict[str, Any] = {}
    for workload in workloads:
        n_steps = 3 if quick else WHOLE_RUN_STEPS[workload.name]
        step = workload.build(quick, device)
        for _ in range(3):
            step()
        gc.collect()
        pair = ("none", TARGET_CONFIG)
        wall: dict[str, list[float]] = {name: [] for name in pair}
        cpu: dict[str, list[float]] = {name: [] for name in pair}
        for r in range(rounds):
            for name in pair if r % 2 == 0 else pair[::-1]:
                gc.collect(1)
                _sync(device)
                c0, t0 = time.process_time(), time.perf_counter()
                with configs[name].enter(tmp / "whole.db"):
                    for _ in range(n_steps):
                        step()
                    _sync(device)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        ratios = [w / b for w, b in zip(wall[TARGET_CONFIG], wall["none"])]
        cpu_ratios = [w / b for w, b in zip(cpu[TARGET_CONFIG], cpu["none"]) if b > 0]
        results[workload.name] = {
            "steps": n_steps,
            "rounds": rounds,
            "s_none": _median(wall["none"]),
            "s_memwatch": _median(wall[TARGET_CONFIG]),
            "ratio": _median(ratios),
            "ratio_rounds": ratios,
            "cpu_ratio": _median(cpu_ratios) if cpu_ratios else None,
        }
        del step
        gc.collect()
    return results


# -- time to find a leak -----------------------------------------------------------------------
def _has_kind(findings: Sequence[Any], kind: str) -> Any:
    return next((f for f in findings if f.kind == kind), None)


def bench_leak(
    start: int, max_steps: int, quick: bool, device: torch.device, tmp: Path
) -> dict[str, Any]:
    """Steps and ms from the first ``total += loss`` (at step ``start``) to the finding."""
    from memwatch.analysis import DETECTORS

    torch.manual_seed(0)
    width, batch = (16, 4) if quick else (128, 32)
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, width, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    total: Any = 0.0
    found: Any = None
    leak_steps: int | None = None
    leak_ms: float | None = None
    t_start = time.perf_counter()
    with memwatch(out=tmp / "leak.db", force=True) as mw:
        for i in range(start + max_steps):
            if i == start:
                t_start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if i >= start:
                total += loss  # the bug: keeps every step's graph alive
            opt.step()
            if i >= start:
                found = _has_kind(mw.findings, LEAK_KIND)
                if found is not None:
                    leak_steps = i - start + 1
                    leak_ms = (time.perf_counter() - t_start) * 1e3
                    break
    at_exit = found is None and _has_kind(mw.findings, LEAK_KIND) is not None
    del total
    result: dict[str, Any] = {
        "kind": LEAK_KIND,
        "leak_starts_at_step": start,
        "max_steps": max_steps,
        "detected": found is not None,
        "detected_only_at_exit": at_exit,
        "steps_to_finding": leak_steps,
        "ms_to_finding": leak_ms,
        "detectors": sorted(d.kind for d in DETECTORS),
    }
    if found is not None:
        result["finding_first_step"] = found.first_step
        result["finding_title"] = found.title
    return result


# -- memwatch's own memory under a planted graph leak ------------------------------------------
def _rss_anon_bytes() -> int | None:
    """Anonymous resident bytes (heap; no mapped files), Linux only."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def leak_memory_child(
    mode: str, n_steps: int, out: str, fit_from: int | None = None, window: int | None = None
) -> dict[str, Any]:
    """One leaking run in this (fresh) process: RSS gained per step, by a least-squares fit.

    ``total += loss`` keeps every step's graph. The fit starts at step ``fit_from`` (by
    default n/5: the allocator's warm-up) and reads RSS after a full collection at 40
    checkpoints (4 in short runs). ``window``: memwatch's in-memory window, if not its own.
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 128), torch.randint(0, 10, (32,))
    options: dict[str, Any] = {"window": window} if window else {}
    watch: contextlib.AbstractContextManager[Any] = (
        memwatch(out=out, force=True, **options) if mode == "memwatch" else contextlib.nullcontext()
    )
    first = n_steps // 5 if fit_from is None else fit_from
    every = max(1, (n_steps - first) // (40 if n_steps >= 1000 else 4))  # gc.collect ~0.3 s
    steps: list[int] = []
    rss: list[int] = []
    anon: list[int] = []
    total: Any = 0.0
    t0 = time.perf_counter()
    with watch:
        for i in range(n_steps):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            total += loss  # the planted bug: keeps every step's graph
            opt.step()
            if i >= first and (i - first) % every == 0:
                gc.collect()
                steps.append(i)
                rss.append(_rss_bytes() or 0)
                anon.append(_rss_anon_bytes() or 0)
    elapsed = time.perf_counter() - t0
    return {
        "mode": mode,
        "steps": n_steps,
        "fit_from_step": first,
        "rss_bytes_per_step": _slope(steps, rss),
        "rss_anon_bytes_per_step": _slope(steps, anon) if all(anon) else None,
        "rss_start": rss[0],
        "rss_end": rss[-1],
        "s_per_step": elapsed / n_steps,
    }


def bench_leak_memory(rounds: int, n_steps: int, quick: bool, tmp: Path) -> dict[str, Any]:
    """RSS gained per step by a ``total += loss`` leak without and with memwatch.

    Two phases, each its own pair of runs per round: the first ``n_steps`` steps (fitted
    from n/5), while memwatch's in-memory window of ``WINDOW`` steps and events fills, and
    ``FULL_WINDOW_STEPS`` steps once it is full (fitted from ``WINDOW`` + 200): what
    memwatch adds there grows with the user's leak, not with the run's length. The
    target (issue 15) is judged on the second; the first is reported as before.
    """
    window = 64 if quick else WINDOW
    filling = _leak_memory_phase(rounds, n_steps, None, None, quick, tmp, "filling")
    after = _leak_memory_phase(
        rounds,
        window + (40 if quick else FULL_WINDOW_STEPS),
        window + (8 if quick else 200),
        window,
        quick,
        tmp,
        "full",
    )
    return {**filling, "full_window": {**after, "window": window}, "target_on": "full_window"}


def _leak_memory_phase(
    rounds: int,
    n_steps: int,
    fit_from: int | None,
    window: int | None,
    quick: bool,
    tmp: Path,
    tag: str,
) -> dict[str, Any]:
    """One phase of ``bench_leak_memory``: each run a fresh process (freed memory of an
    earlier run in the same process would be reused and hide growth); rounds alternate
    which configuration runs first; the ratio is the median over rounds of (memwatch / no
    tool in the same round). ``quick`` (the smoke test) runs in this process: its numbers
    mean nothing, it only keeps the section from rotting without more torch imports."""
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "memwatch": []}
    ratios: list[float] = []
    for r in range(rounds):
        order = ("none", "memwatch") if r % 2 == 0 else ("memwatch", "none")
        got: dict[str, dict[str, Any]] = {}
        for mode in order:
            out = str(tmp / f"leak-memory-{tag}-{r}-{mode}.db")
            if quick:
                got[mode] = leak_memory_child(mode, n_steps, out, fit_from, window)
                runs[mode].append(got[mode])
                continue
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--leak-memory-child",
                mode,
                "--leak-memory-steps",
                str(n_steps),
                "--leak-memory-out",
                out,
            ]
            if fit_from is not None:
                command += ["--leak-memory-fit-from", str(fit_from)]
            if window is not None:
                command += ["--leak-memory-window", str(window)]
            proc = subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            got[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[mode].append(got[mode])
        base = got["none"]["rss_bytes_per_step"]
        ratios.append(got["memwatch"]["rss_bytes_per_step"] / base if base > 0 else float("nan"))
    ratio = _median(ratios)
    per_step = {m: _median([run["rss_bytes_per_step"] for run in v]) for m, v in runs.items()}
    return {
        "workload": "MLP 128-128-10, batch 32, SGD; `total += loss` every step",
        "steps": n_steps,
        "fit_from_step": runs["none"][0]["fit_from_step"],
        "rounds": rounds,
        "rss_bytes_per_step": per_step,
        "ratio": ratio,
        "ratio_rounds": ratios,
        "target_ratio": LEAK_MEMORY_TARGET,
        "status": "PASS" if ratio <= LEAK_MEMORY_TARGET else "MISS",
        "runs": runs,
    }


#: memwatch may add this much to what a leaking loop gains per step (issue 15).
LEAK_MEMORY_TARGET = 1.15
#: Steps of the leak-memory runs once memwatch's in-memory window is full.
FULL_WINDOW_STEPS = 2000


# -- environment -------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _git_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except Exception:
        return None
    return f"{rev}+dirty" if dirty else rev


def environment(device: torch.device) -> dict[str, Any]:
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    machine: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "loadavg_start": _loadavg(),
        "device": str(device),
    }
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "memwatch": getattr(memwatch_pkg, "__version__", None),
        "git": _git_revision(),
    }


# -- output ------------------------------------------------------------------------------------
def _fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def _mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.2f} MiB"


def _table(
    overhead: dict[str, Any],
    names: list[str],
    used: list[str],
    configs: dict[str, Config],
    value: str,
    ratio: str,
) -> list[str]:
    lines = ["| configuration | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for cfg in used:
        cells = []
        for name in names:
            r = overhead[name]["configs"][cfg]
            cells.append(f"{_fmt_ms(r[value])} ms (×{r[ratio]:.2f})")
        lines.append(f"| {configs[cfg].label} | " + " | ".join(cells) + " |")
    return lines


def render(report: dict[str, Any], configs: dict[str, Config]) -> str:
    env = report["environment"]
    machine = env["machine"]
    lines = [
        "# memwatch overhead benchmark",
        "",
        f"- date: {env['date']}; git {env['git'] or 'unknown'}",
        f"- machine: {machine['platform']}; {machine['cpu']}; {machine['cores']} cores "
        f"({machine['usable_cores']} usable); device {machine['device']}",
        f"- python {env['python']}, torch {env['torch']} ({env['torch_threads']} thread), "
        f"memwatch {env['memwatch']}",
        f"- load average at start {machine['loadavg_start']}, at end {machine.get('loadavg_end')}",
        f"- deep configuration: {report['deep_config']}",
    ]
    overhead = report.get("overhead")
    if overhead:
        names = list(overhead)
        used = list(next(iter(overhead.values()))["configs"])
        opts = report["options"]
        lines += [
            "",
            f"## Time per step ({opts['rounds']} rounds; ms/step median, "
            "(×ratio) = median of per-round ratios against no tool)",
            "",
        ]
        lines += _table(overhead, names, used, configs, "ms_per_step", "ratio")
        lines += [
            "",
            "Process CPU time per step (excludes time spent waiting for a core on a busy "
            "machine; ms/step, ×ratio):",
            "",
        ]
        lines += _table(overhead, names, used, configs, "cpu_ms_per_step", "cpu_ratio")
        lines += [
            "",
            "Steps per block: "
            + "; ".join(
                f"{n} {overhead[n]['steps_per_block']}"
                + (
                    f" (census {overhead[n]['census_steps_per_block']})"
                    if "gc-census" in used
                    else ""
                )
                for n in names
            )
            + ". Enter+exit of the tool per block (not in the times above), ms: "
            + "; ".join(
                f"{n}: "
                + ", ".join(
                    f"{c} {overhead[n]['configs'][c]['enter_exit_ms']:.1f}"
                    for c in used
                    if c != "none"
                )
                for n in names
            )
            + ".",
        ]
        settle = opts.get("settle") or 0
        if settle and TARGET_CONFIG in used:
            lines += [
                "",
                f"The first {settle} steps inside each tool are timed apart (memwatch measures "
                "everything on a run's first steps and watches every module call while it "
                "learns the root modules); memwatch default on them: "
                + "; ".join(
                    f"{n} {_fmt_ms(overhead[n]['configs'][TARGET_CONFIG]['settle_ms_per_step'])}"
                    f" ms/step (×{overhead[n]['configs'][TARGET_CONFIG]['settle_ratio']:.2f})"
                    for n in names
                )
                + ".",
            ]
        if report.get("targets"):
            lines += ["", "### Targets (memwatch default vs no tool)", ""]
            for t in report["targets"]:
                lines.append(
                    f"- {t['status']} {t['workload']}: ×{t['ratio']:.3f} "
                    f"(target ≤ {t['max_ratio']:.2f}; "
                    f"per-round quartiles {t['ratio_q1']:.3f}–{t['ratio_q3']:.3f}; "
                    f"+{t['added_us_per_step']:.0f} µs/step; CPU-time ratio ×{t['cpu_ratio']:.3f}"
                    + (
                        f"; no tool against itself ×{t['noise_ratio']:.3f}, quartiles "
                        f"{t['noise_q1']:.3f}–{t['noise_q3']:.3f})"
                        if t.get("noise_ratio") is not None
                        else ")"
                    )
                )
    whole_run = report.get("whole_run")
    if whole_run:
        lines += [
            "",
            "## Whole runs (one watch from a run's first step to its last, against the same "
            "steps without a tool, in turn)",
            "",
            "| workload | steps | no tool | memwatch | ratio (median) | per round | CPU-time ratio "
            "| target |",
            "|---|---:|---:|---:|---:|---|---:|---|",
        ]
        for name, w in whole_run.items():
            target = TARGETS.get(name)
            verdict = (
                ""
                if target is None
                else f"≤ {target:.2f}: {'PASS' if w['ratio'] <= target else 'MISS'}"
            )
            cpu_ratio = "" if w["cpu_ratio"] is None else f"×{w['cpu_ratio']:.3f}"
            lines.append(
                f"| {name} | {w['steps']} | {w['s_none']:.2f} s | {w['s_memwatch']:.2f} s "
                f"| ×{w['ratio']:.3f} | {', '.join(f'{r:.3f}' for r in w['ratio_rounds'])} "
                f"| {cpu_ratio} | {verdict} |"
            )
    long_run = report.get("long_run")
    if long_run:
        full_note = "" if long_run["window_full_when_measured"] else " (window NOT yet full)"
        lines += [
            "",
            f"## Full window (tiny MLP, memwatch default, window {long_run['window']} steps)",
            "",
            f"- last {long_run['measured_steps']} of {long_run['fill_steps']} steps in one "
            f"watch{full_note}: {_fmt_ms(long_run['ms_per_step_full'])} ms/step "
            f"(×{long_run['ratio_full']:.2f})",
            f"- first {long_run['measured_steps']} steps of the same watch: "
            f"{_fmt_ms(long_run['ms_per_step_fresh'])} ms/step (×{long_run['ratio_fresh']:.2f})",
            f"- no tool: {_fmt_ms(long_run['ms_per_step_none'])} ms/step "
            f"({long_run['rounds']} rounds)",
        ]
    run_file = report.get("run_file")
    if run_file:
        lines += ["", f"## Run file size (tiny MLP, {run_file['steps']} steps, closed)", ""]
        for mode in ("default", "deep"):
            r = run_file[mode]
            lines.append(
                f"- {mode}: {r['bytes']:,} bytes = {r['bytes_per_step']:.0f} bytes/step "
                f"({r['marginal_bytes_per_step']:.0f} bytes/step above an empty run of "
                f"{run_file['empty_bytes']:,} bytes); rows {r['rows']}"
            )
    memory = report.get("memory")
    if memory:
        a, b = memory["points"][0], memory["points"][-1]
        lines += [
            "",
            f"## memwatch's own memory ({memory['steps']:,} steps of Linear(4,4) "
            "forward/backward + mw.step())",
            "",
            f"- {'BOUNDED' if memory['bounded'] else 'GROWING'} ({memory['criterion']}): "
            f"RSS {_mib(a['rss_bytes'])} at step {a['step']:,} → {_mib(b['rss_bytes'])} at step "
            f"{b['step']:,} (fitted growth {_mib(memory['rss_growth_bytes'])}); live Python "
            f"blocks {a['python_blocks']:,} → {b['python_blocks']:,} (fitted growth "
            f"{memory['python_block_growth']:+,})",
            f"- steps/events kept in memory at the end: {b['steps_in_memory']}/"
            f"{b['events_in_memory']}; {memory['us_per_step']:.0f} µs/step",
        ]
        traced = memory.get("tracemalloc")
        if traced:
            lines.append(
                f"- tracemalloc: memwatch allocations made after step {a['step']:,} and alive "
                f"at the end: {traced['memwatch_bytes_alive_from_after_first']:,} B; top lines: "
                + "; ".join(traced["top_lines"])
            )
    leak_memory = report.get("leak_memory")
    if leak_memory:
        per_step = leak_memory["rss_bytes_per_step"]
        lines += [
            "",
            f"## memwatch's own memory under a planted graph leak (`total += loss`, "
            f"{leak_memory['steps']:,} steps, {leak_memory['rounds']} rounds, a fresh "
            "process per run)",
            "",
            f"- RSS gained per step while memwatch's window fills (fitted from step "
            f"{leak_memory['fit_from_step']:,}): no tool {per_step['none'] / 1024:.2f} KiB, "
            f"memwatch {per_step['memwatch'] / 1024:.2f} KiB: ×{leak_memory['ratio']:.3f} "
            "(rounds " + ", ".join(f"×{r:.3f}" for r in leak_memory["ratio_rounds"]) + ")",
        ]
        full = leak_memory.get("full_window")
        if full:
            per_step = full["rss_bytes_per_step"]
            lines.append(
                f"- once its window of {full['window']:,} steps is full ({full['steps']:,} steps, "
                f"fitted from step {full['fit_from_step']:,}): no tool "
                f"{per_step['none'] / 1024:.2f} KiB, memwatch "
                f"{per_step['memwatch'] / 1024:.2f} KiB: ×{full['ratio']:.3f} (target "
                f"≤ ×{full['target_ratio']:.2f}: {full['status']}; rounds "
                + ", ".join(f"×{r:.3f}" for r in full["ratio_rounds"])
                + ")"
            )
    leak = report.get("leak")
    if leak:
        lines += [
            "",
            f"## Time to find a leak (`total += loss` from step {leak['leak_starts_at_step']})",
            "",
        ]
        if leak["detected"]:
            lines.append(
                f"- {leak['kind']} found after {leak['steps_to_finding']} leaking steps, "
                f"{leak['ms_to_finding']:.1f} ms (finding says first step "
                f"{leak.get('finding_first_step')}: {leak.get('finding_title')})"
            )
        else:
            extra = (
                " (found only by the final analysis at exit)"
                if leak["detected_only_at_exit"]
                else ""
            )
            lines.append(
                f"- not detected: no {leak['kind']} finding within {leak['max_steps']} leaking "
                f"steps{extra}; detectors registered: {', '.join(leak['detectors']) or 'none'}"
            )
    return "\n".join(lines) + "\n"


# -- command line ------------------------------------------------------------------------------
SECTIONS = ("overhead", "whole-run", "long-run", "run-file", "memory", "leak", "leak-memory")


def _csv(value: str, known: Sequence[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-step overhead of memwatch against no tool, torch.profiler and a "
        "gc census; run-file size; memwatch's own memory; time to find a leak.",
    )
    parser.add_argument("--rounds", type=int, help="rounds of interleaved blocks (default 9)")
    parser.add_argument("--steps", type=int, help="steps per block (default per workload)")
    parser.add_argument(
        "--settle",
        type=int,
        help="steps run inside the tool before each timed block, timed apart (default 16)",
    )
    parser.add_argument("--census-steps", type=int, help="steps per gc-census block")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--configs",
        default="none,memwatch,memwatch-deep,profiler,gc-census",
        help="comma list of none, none-again, memwatch, memwatch-idle, memwatch-deep, "
        "profiler, gc-census (none is always added: ratios need it)",
    )
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--file-steps", type=int, help="steps for the run-file size (default 1000)")
    parser.add_argument(
        "--memory-steps", type=int, help="steps for memwatch's own memory (default 100000)"
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="memory section: also name memwatch's lines holding memory (slower)",
    )
    parser.add_argument(
        "--long-fill", type=int, help="steps per full-window watch (default: its window + 1100)"
    )
    parser.add_argument("--long-measure", type=int, help="steps timed at each end (default 500)")
    parser.add_argument("--long-rounds", type=int, help="full-window rounds (default 3)")
    parser.add_argument("--whole-rounds", type=int, help="whole-run rounds (default 5)")
    parser.add_argument("--leak-start", type=int, help="step where the leak starts (default 20)")
    parser.add_argument("--leak-steps", type=int, help="leaking steps to wait (default 200)")
    parser.add_argument(
        "--leak-memory-steps", type=int, help="steps per leak-memory run (default 3000)"
    )
    parser.add_argument("--leak-memory-rounds", type=int, help="leak-memory rounds (default 2)")
    parser.add_argument("--leak-memory-child", help=argparse.SUPPRESS)  # internal: one run
    parser.add_argument("--leak-memory-out", help=argparse.SUPPRESS)
    parser.add_argument("--leak-memory-fit-from", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--leak-memory-window", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "rounds": 2 if quick else 9,
        "settle": 2 if quick else 16,
        "file_steps": 40 if quick else 1000,
        "memory_steps": 200 if quick else 100_000,
        "long_fill": 40 if quick else None,
        "long_measure": 10 if quick else 500,
        "long_rounds": 1 if quick else 3,
        "whole_rounds": 1 if quick else 5,
        "leak_start": 5 if quick else 20,
        "leak_steps": 40 if quick else 200,
        "leak_memory_steps": 60 if quick else 3000,
        "leak_memory_rounds": 1 if quick else 2,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.steps = args.steps or 3
        args.census_steps = args.census_steps or 1
    args.workload_list = _csv(args.workloads, list(WORKLOADS), "workload")
    args.config_list = _csv(args.configs, list(make_configs(torch.device("cpu"))), "config")
    if "none" not in args.config_list:
        args.config_list.insert(0, "none")
    args.section_list = _csv(args.sections, SECTIONS, "section")
    if args.long_fill is not None and args.long_fill < 2 * args.long_measure:
        parser.error("--long-fill must be at least twice --long-measure")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.leak_memory_child:
        out = args.leak_memory_out or str(Path(tempfile.gettempdir()) / "leak-memory.db")
        child = leak_memory_child(
            args.leak_memory_child,
            args.leak_memory_steps,
            out,
            args.leak_memory_fit_from,
            args.leak_memory_window,
        )
        print(json.dumps(child))
        return 0
    device = torch.device(args.device)
    configs = make_configs(device)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "environment": environment(device),
        "deep_config": DEEP_USED,
        "options": {
            "quick": args.quick,
            "rounds": args.rounds,
            "steps": args.steps,
            "settle": args.settle,
            "census_steps": args.census_steps,
            "workloads": args.workload_list,
            "configs": args.config_list,
            "sections": args.section_list,
        },
        "configs": {c: configs[c].description for c in args.config_list},
        "workloads": {w: WORKLOADS[w].description for w in args.workload_list},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memwatch-bench-") as tmp_name:
        tmp = Path(tmp_name)
        sections = args.section_list
        timings: dict[str, float] = {}
        for section in sections:
            t0 = time.perf_counter()
            if section == "overhead":
                report["overhead"] = bench_overhead(
                    [WORKLOADS[w] for w in args.workload_list],
                    [configs[c] for c in args.config_list],
                    args.rounds,
                    args.steps,
                    args.census_steps,
                    args.quick,
                    device,
                    tmp,
                    args.settle,
                )
                report["targets"] = check_targets(report["overhead"])
            elif section == "whole-run":
                report["whole_run"] = bench_whole_run(
                    [WORKLOADS[w] for w in args.workload_list],
                    configs,
                    args.whole_rounds,
                    args.quick,
                    device,
                    tmp,
                )
            elif section == "long-run":
                report["long_run"] = bench_long_run(
                    args.long_rounds, args.long_fill, args.long_measure, args.quick, device, tmp
                )
            elif section == "run-file":
                report["run_file"] = bench_run_file(args.file_steps, args.quick, device, tmp)
            elif section == "memory":
                report["memory"] = bench_memory(args.memory_steps, args.tracemalloc, device, tmp)
            elif section == "leak":
                report["leak"] = bench_leak(
                    args.leak_start, args.leak_steps, args.quick, device, tmp
                )
            elif section == "leak-memory":
                report["leak_memory"] = bench_leak_memory(
                    args.leak_memory_rounds, args.leak_memory_steps, args.quick, tmp
                )
            timings[section] = round(time.perf_counter() - t0, 1)
        report["section_seconds"] = timings
    report["environment"]["machine"]["loadavg_end"] = _loadavg()
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(render(report, configs), end="")
    print(
        f"\n(benchmark took {report['elapsed_s']} s: "
        + ", ".join(f"{k} {v} s" for k, v in report["section_seconds"].items())
        + ")"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
