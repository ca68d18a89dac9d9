"""Instructions per training step, bare and under memwatch: a cost that load cannot move.

On a shared VM, wall-clock ratios of a few percent are noise (the bare step timed against
itself moves by up to ±7 %). Instruction counts under ``valgrind --tool=callgrind`` do not
depend on what else the machine runs, so they tell whether a change made memwatch's own
work per step smaller. They weigh Python more than time does (torch's kernels do more per
instruction), so they complement ``overhead.py``; they do not replace it.

Method: one process per count. The child builds the workload of ``overhead.py``, settles
(3 bare steps; under memwatch 16 more inside the watch), then counts only the measured
steps: instrumentation is off at start (``--instr-atstart=no``) and switched on and off
around them with ``callgrind_control``. Under memwatch the measured steps are its common
steady state, a step that counts no saved tensors: under valgrind every step runs ~50×
slower and valgrind's own memory grows, so the sampling's time-based choices and the
memory signals would differ from a native run. The child therefore pins them: the sampling
counts no step after the settling, and RSS reads as constant. (Counted steps cost more:
``overhead.py`` times them where they fall.)

    python benchmarks/instructions.py                      # tiny-mlp, many-forwards, bptt
    python benchmarks/instructions.py --workloads tiny-mlp --root /path/to/other/checkout
    python benchmarks/instructions.py --workloads many-forwards --counted-every 37

``--counted-every K`` measures the steady state at a sampling stride of K instead: K steps
under memwatch, the first of which counts saved tensors (what the hooks, the probes that
need counted steps and the collections their objects cause cost, spread over the stride).

``--without PROBES`` (probe names, comma-separated: ``holders``, ``loop``, ``flags`` ...;
``all`` for every probe) takes those probes off the tracker after the settling, so that
what each part of memwatch costs is a difference of two counts. The hooks a probe installs
on torch itself (the loop recorders' optimizer and ``zero_grad`` hooks) stay. ``--idle``
switches the whole watch off after the settling (``Tracker.off``): every hook stays
installed and returns at once, so its count is what the hooks cost doing nothing.

Needs valgrind (``callgrind_control`` on PATH); ~1 min for tiny-mlp, ~4 for bptt.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Measured steps per workload: enough to average over, few enough for valgrind.
STEPS = {"tiny-mlp": 200, "mlp-1024": 4, "convnet": 4, "many-forwards": 8, "bptt": 8}
SETTLE = 16
REPO = Path(__file__).resolve().parents[1]


def child(
    root: Path,
    workload: str,
    mode: str,
    steps: int,
    counted_every: int = 0,
    without: frozenset[str] = frozenset(),
    idle: bool = False,
) -> None:
    """One count (runs under valgrind): settle, then count ``steps`` steps only; with
    ``counted_every`` K, the first of every K measured steps counts saved tensors; with
    ``idle``, the watch is switched off after the settling (``Tracker.off``)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    sys.path[:0] = [str(root), str(root / "benchmarks")]
    import torch

    torch.set_num_threads(1)
    import overhead

    import memwatch

    if not Path(memwatch.__file__).resolve().is_relative_to(root.resolve()):
        sys.exit(f"memwatch: imported {memwatch.__file__}, not the checkout at {root}")
    step = overhead.WORKLOADS[workload].build(False, torch.device("cpu"))
    for _ in range(3):
        step()

    def measured() -> None:
        _instrument(True)
        for _ in range(steps):
            step()
        _instrument(False)

    if mode == "none":
        measured()
        return
    from memwatch.collect import rss

    rss.RssReader.read = lambda self: 100 << 20  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp, memwatch.memwatch(out=Path(tmp) / "run.db") as mw:
        for _ in range(SETTLE):
            step()
        tracker = mw._tracker
        tracker.sampling.step_end = lambda *args, **kwargs: False
        while tracker._step_counted:
            step()
        if without:
            tracker.probes = [
                p for p in tracker.probes if "all" not in without and p.name not in without
            ]
            tracker._rebuild_probe_hooks()
        if idle:
            tracker.off = True  # every hook stays installed and returns at once
        if counted_every:
            ends = [counted_every - 1]  # step ends so far: the next one counts a step

            def every_kth(*args: object, **kwargs: object) -> bool:
                ends[0] += 1
                return ends[0] % counted_every == 0

            tracker.sampling.step_end = every_kth
            step()  # its end decides that the first measured step counts
            assert tracker._step_counted
        measured()


def _instrument(on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        check=True,
        capture_output=True,
    )


def count(
    root: Path,
    workload: str,
    mode: str,
    steps: int,
    counted_every: int = 0,
    without: str = "",
    idle: bool = False,
) -> int:
    """Instructions of ``steps`` measured steps, from one child under valgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                workload,
                mode,
                str(steps),
                "--root",
                str(root),
                "--counted-every",
                str(counted_every),
                "--without",
                without,
                *(["--idle"] if idle else []),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    found = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        sys.exit(f"memwatch: the {workload}/{mode} count failed:\n{tail}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="tiny-mlp,many-forwards,bptt")
    parser.add_argument("--root", type=Path, default=REPO, help="the checkout to count")
    parser.add_argument(
        "--counted-every",
        type=int,
        default=0,
        metavar="K",
        help="measure K steps under memwatch, the first of them counting saved tensors (the "
        "steady state at a sampling stride of K, collections included); default: only "
        "steps that count nothing",
    )
    parser.add_argument(
        "--without",
        default="",
        metavar="PROBES",
        help="probe names (comma-separated, or all) taken off the tracker after the settling: "
        "what they cost is the difference to a count without this option",
    )
    parser.add_argument(
        "--idle",
        action="store_true",
        help="switch the watch off after the settling (``Tracker.off``): its hooks stay "
        "installed and return at once, so the count is the floor of a watch built on them",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workload, mode, steps = args.child
        without = frozenset(filter(None, args.without.split(",")))
        child(args.root, workload, mode, int(steps), args.counted_every, without, args.idle)
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("memwatch: valgrind (with callgrind_control) is needed for instruction counts")
    every = args.counted_every
    mix = f", 1 step in {every} counting saved tensors" if every else ""
    if args.without:
        mix += f", without the probes {args.without}"
    if args.idle:
        mix += ", switched off after the settling (its hooks installed)"
    print(f"Instructions per step (callgrind), memwatch from {args.root}{mix}:")
    print("| workload | steps | no tool | memwatch | added | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for workload in args.workloads.split(","):
        steps = STEPS[workload]
        bare = count(args.root, workload, "none", steps) / steps
        watched_steps = every or steps
        watched = (
            count(args.root, workload, "memwatch", watched_steps, every, args.without, args.idle)
            / watched_steps
        )
        print(
            f"| {workload} | {watched_steps} | {bare / 1e6:.3f} M | {watched / 1e6:.3f} M | "
            f"{(watched - bare) / 1e6:+.3f} M | ×{watched / bare:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
