"""Dashboard benchmark: open a long run to a drawn timeline, then time follow refreshes.

    python benchmarks/tui_bench.py                 # 1,000,000 steps (targets: <1 s, <50 ms)
    python benchmarks/tui_bench.py --steps 2000    # quick smoke run

Writes a run file of N generated CUDA steps and their strided memory categories (meta
through ``RunWriter``, rows with one
``executemany``), opens the dashboard headless at 160x50 and reports:

* open → first drawn timeline (a preview from sampled steps on long runs), and
  open → exact min/max timeline (every step read once into the index);
* follow refresh: the writer commits 100 more steps; the dashboard's time for it, as
  CPU time of its threads (wall time also shown; it grows when other processes compete
  for the cores): the worker's read (new rows, index tail, chart, cursor values),
  applying it on the UI thread, and drawing the timeline;
* zoom / pan: the key's action → redrawn timeline (the window read in a worker).

Times are wall-clock on this machine, which other processes may share: run it twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_t_import = time.perf_counter()
from memwatch_tui.app import MemwatchApp  # noqa: E402
from memwatch_tui.feed import FileFeed  # noqa: E402
from memwatch_tui.widgets import Timeline  # noqa: E402

from memwatch.records import STEP_COLUMNS, RunInfo  # noqa: E402
from memwatch.store import RunWriter  # noqa: E402

IMPORT_S = time.perf_counter() - _t_import
MiB = 1 << 20
GiB = 1 << 30
OPEN_TARGET_S = 1.0
REFRESH_TARGET_S = 0.050


def rows(start: int, count: int) -> Iterator[tuple[object, ...]]:
    """Steps of a run leaking 1 KiB a step, with a 2 GiB peak spike every 7919 steps."""
    for step in range(start, start + count):
        allocated = 4 * GiB + step * 1024
        spike = 2 * GiB if step % 7919 == 0 else 0
        yield (
            step, 1_700_000_000.0 + step * 0.01, 0.01, "optimizer",
            allocated, allocated + GiB, allocated + 300 * MiB + spike, None,
            200 * MiB + (step % 100) * MiB, 900 * MiB, 0, 3 * GiB + step * 16,
            1, 1, 0,
        )  # fmt: skip


# The first 15 step columns (later ones, such as `measured` of schema 1.4, stay NULL).
INSERT = f"INSERT INTO steps ({', '.join(STEP_COLUMNS[:15])}) VALUES ({', '.join('?' * 15)})"


#: Memory by category, recorded as the collector does (steps 0-7, then every 16th).
INSERT_CATEGORIES = "INSERT INTO categories VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def category_rows(start: int, count: int) -> Iterator[tuple[object, ...]]:
    for step in range(start, start + count):
        if step < 8 or step % 16 == 0:
            activations = 200 * MiB + (step % 100) * MiB
            total = 2 * GiB + activations
            yield (step, GiB // 2, GiB // 2, GiB, activations, total - 2 * GiB - activations,
                   total, "cuda-allocator")  # fmt: skip


def make_run(path: Path, steps: int) -> float:
    """A live-looking run file of ``steps`` steps; returns the seconds it took."""
    started = time.perf_counter()
    info = RunInfo(
        id="bench", script="train.py", argv=("train.py",), started_at=1_700_000_000.0,
        python="3.11", torch="2.4.0", device_type="cuda", device_name="bench GPU",
        device_total_bytes=80 * GiB, pid=1, host="bench-host",
    )  # fmt: skip
    RunWriter(path, info).close()  # schema + meta; ended_at stays None: the run is "live"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executemany(INSERT, rows(0, steps))
        conn.executemany(INSERT_CATEGORIES, category_rows(0, steps))
    return time.perf_counter() - started


async def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> float:
    """Poll ``condition`` every millisecond; returns ``perf_counter()`` when it held."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.001)
    return time.perf_counter()


def refreshed_past(app: MemwatchApp, count: int) -> bool:
    return app.refresh_count > count


def drawn_up_to(timeline: Timeline, step: int) -> bool:
    return timeline.data is not None and timeline.data.hi == step


def drawn_more(timeline: Timeline, count: int) -> bool:
    return timeline.draw_count > count


async def measure(path: Path, refreshes: int) -> dict[str, float]:
    results: dict[str, float] = {}
    t0 = time.perf_counter()
    app = MemwatchApp(FileFeed(path), follow=True, refresh_s=0.1, alive=lambda info: True)
    async with app.run_test(size=(160, 50)) as pilot:
        timeline = app.query_one(Timeline)
        first = await wait_until(lambda: bool(timeline.draws))
        results["open_first_draw_s"] = first - t0
        results["first_draw_exact"] = float(timeline.draws[0][1])
        exact = await wait_until(lambda: any(e for _, e in timeline.draws))
        results["open_exact_draw_s"] = exact - t0
        results["index_wall_s"], results["index_cpu_s"] = app.index_timings

        # Follow: the writer commits 100 steps; the dashboard picks them up at its pace.
        writer = sqlite3.connect(path)
        last = app.snapshot.last if app.snapshot and app.snapshot.last is not None else -1
        parts: dict[str, list[float]] = {}
        for _ in range(refreshes):
            count = app.refresh_count
            with writer:
                writer.executemany(INSERT, rows(last + 1, 100))
                writer.executemany(INSERT_CATEGORIES, category_rows(last + 1, 100))
            last += 100
            await wait_until(partial(refreshed_past, app, count))
            await wait_until(partial(drawn_up_to, timeline, last))
            await pilot.pause()
            (read_wall, read_cpu), (apply_wall, apply_cpu) = app.refresh_timings
            draw_wall, draw_cpu = timeline.last_draw_s
            sample = {
                "read": read_cpu, "apply": apply_cpu, "draw": draw_cpu,
                "total": read_cpu + apply_cpu + draw_cpu,
                "total_wall": read_wall + apply_wall + draw_wall,
            }  # fmt: skip
            for key, value in sample.items():
                parts.setdefault(key, []).append(value)
        writer.close()
        for key, values in parts.items():
            results[f"refresh_{key}_median_s"] = statistics.median(values)
        results["refresh_total_max_s"] = max(parts["total"])

        # Zoom and pan on the long run: action to redrawn window (read in a worker).
        await pilot.press("f")  # stop following so the window stays where we put it
        await pilot.pause()
        lags = []
        actions: list[Callable[[], None]] = [
            lambda: app.action_zoom(0.5),
            lambda: app.action_zoom(0.5),
            lambda: app.action_zoom(0.5),
            lambda: app.action_pan(-0.5),
            lambda: app.action_pan(-0.5),
            app.action_whole_run,
        ]
        for action in actions:
            before = timeline.draw_count
            pressed = time.perf_counter()
            action()
            done = await wait_until(partial(drawn_more, timeline, before))
            lags.append(done - pressed)
        results["zoom_pan_median_s"] = statistics.median(lags)
        results["zoom_pan_max_s"] = max(lags)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--refreshes", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        generate_s = make_run(path, args.steps)
        results = asyncio.run(measure(path, args.refreshes))
    results = {"steps": float(args.steps), "generate_s": generate_s, "import_s": IMPORT_S,
               **results, "load_average": os.getloadavg()[0]}  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        ms = {k: v * 1000 for k, v in results.items() if k.endswith("_s")}
        print(f"run file: {args.steps:,} steps, generated in {results['generate_s']:.1f} s")
        cores = os.cpu_count() or 1
        print(f"machine: {cores} cores, load average {results['load_average']:.1f} at the end")
        print(f"import tui.app:                 {ms['import_s']:7.1f} ms (before the clock)")
        kind = "exact" if results["first_draw_exact"] else "sampled preview"
        print(f"open → first drawn timeline:    {ms['open_first_draw_s']:7.1f} ms ({kind})")
        print(
            f"open → exact min/max timeline:  {ms['open_exact_draw_s']:7.1f} ms "
            f"(index: {ms['index_cpu_s']:.0f} ms CPU, {ms['index_wall_s']:.0f} ms wall)"
        )
        print(
            f"follow refresh (+100 steps):    {ms['refresh_total_median_s']:7.1f} ms CPU median, "
            f"{ms['refresh_total_max_s']:.1f} ms max (read {ms['refresh_read_median_s']:.1f} + "
            f"apply {ms['refresh_apply_median_s']:.1f} + draw {ms['refresh_draw_median_s']:.1f}); "
            f"wall {ms['refresh_total_wall_median_s']:.1f} ms"
        )
        print(
            f"zoom / pan key → redraw:        {ms['zoom_pan_median_s']:7.1f} ms median, "
            f"{ms['zoom_pan_max_s']:.1f} ms max"
        )
    ok = (
        results["open_first_draw_s"] < OPEN_TARGET_S
        and results["refresh_total_median_s"] < REFRESH_TARGET_S
    )
    if not args.json:
        print(
            f"targets: first draw < {OPEN_TARGET_S * 1000:.0f} ms, follow refresh < "
            f"{REFRESH_TARGET_S * 1000:.0f} ms: {'met' if ok else 'MISSED'}"
        )
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
