"""Whole programs, plain and under ``memwatch run``: the pytorch/examples runs issue 15 timed.

``overhead.py`` times blocks of steps inside one process. Users run whole programs:
``memwatch run train.py`` pays its start, its sampling's warm-up, the report at exit, and
every step in between. This benchmark runs the two example programs the issue measured
(reproduced in ``benchmarks/examples/``, each file citing its source) as separate
processes, plain and watched in turn (plain first in even rounds, watched first in odd
ones), and prints per-round ratios of wall and CPU time and their medians.

It also checks that memwatch changed nothing the program computed: each example prints a
digest of its final weights, which must be the same plain and watched.

    python benchmarks/examples.py                       # both, 3 rounds (~8 min)
    python benchmarks/examples.py --examples reinforce --rounds 5 --json examples.json
    python benchmarks/examples.py --quick --rounds 1    # seconds: the smoke test's run

Exit status 1 when a run failed or a watched run's weights differ from the plain run's.

The issue's numbers (its machine): reinforce 71.0 s plain, 105.8 s watched (×1.49, goal
≤ ×1.10); time_sequence_prediction 32.6 s plain, 38.6 s watched (×1.18, goal ≤ ×1.05).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCHEMA = "memwatch.bench.examples/1"


@dataclass(frozen=True)
class Example:
    """One example program, the arguments it runs with here and the issue's goal
    (``quick_args``: a few seconds, for the smoke test)."""

    name: str
    script: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    goal: float
    what: str


EXAMPLES = {
    e.name: e
    for e in (
        Example(
            "reinforce",
            "reinforce.py",
            (),
            ("--episodes", "5"),
            1.10,
            "REINFORCE on CartPole until solved: batch-1 policy forwards, one step an episode",
        ),
        Example(
            "time_sequence_prediction",
            "time_sequence_prediction.py",
            ("--steps", "2"),
            ("--steps", "0"),
            1.05,
            "two LSTMCells over 999 time steps, LBFGS (up to 25 closure passes a step)",
        ),
    )
}


@dataclass(frozen=True)
class Run:
    """One process: how long it took and the digest it printed."""

    wall_s: float
    cpu_s: float
    digest: str | None
    returncode: int


def child_env(pycache: Path | None) -> dict[str, str]:
    """One torch thread; bytecode cached in ``pycache``, as for an installed package.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (this VM sets it), an editable install
    compiles memwatch's modules at every start, ~0.1-0.2 s a run that an installed
    memwatch never pays; the cache goes to a folder of its own, never into the tree.
    (None: the environment as it is, for ``--quick``, which judges no time.)"""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if pycache is None:
        return env
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def run_once(command: list[str], env: dict[str, str]) -> Run:
    """Run ``command`` to its end; wall and CPU time (its own and its children's, from
    the kernel's accounting of the finished process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    found = re.search(r"weights digest (\S+)", done.stdout)
    return Run(wall, cpu, found.group(1) if found else None, done.returncode)


def commands(example: Example, run_file: Path, quick: bool = False) -> dict[str, list[str]]:
    script = str(HERE / "examples" / example.script)
    args = example.quick_args if quick else example.args
    return {
        "plain": [sys.executable, script, *args],
        "memwatch": [
            sys.executable,
            "-m",
            "memwatch",
            "run",
            "--out",
            str(run_file),
            "--force",
            script,
            *args,
        ],
    }


def measure(example: Example, rounds: int, quick: bool = False) -> dict[str, object]:
    """``rounds`` pairs of runs, in turn, after one short run of each (not counted: it
    fills the bytecode cache and the page cache; not with ``quick``); per-round ratios
    and their medians."""
    runs: dict[str, list[Run]] = {"plain": [], "memwatch": []}
    with tempfile.TemporaryDirectory() as tmp:
        env = child_env(None if quick else Path(tmp) / "pycache")
        if not quick:
            for command in commands(example, Path(tmp) / "warm.db", quick=True).values():
                run_once(command, env)
        cmds = commands(example, Path(tmp) / "run.db", quick)
        for r in range(rounds):
            order = ("plain", "memwatch") if r % 2 == 0 else ("memwatch", "plain")
            for mode in order:
                run = run_once(cmds[mode], env)
                runs[mode].append(run)
                print(
                    f"  {example.name} round {r + 1} {mode}: {run.wall_s:.2f} s wall, "
                    f"{run.cpu_s:.2f} s cpu, digest {run.digest}",
                    file=sys.stderr,
                    flush=True,
                )
    plain, watched = runs["plain"], runs["memwatch"]
    wall = [w.wall_s / p.wall_s for p, w in zip(plain, watched)]
    cpu = [w.cpu_s / p.cpu_s for p, w in zip(plain, watched)]
    digests = {r.digest for r in plain + watched}
    failed = [r.returncode for r in plain + watched if r.returncode]
    return {
        "example": example.name,
        "what": example.what,
        "args": list(example.quick_args if quick else example.args),
        "rounds": rounds,
        "plain_wall_s": [round(r.wall_s, 3) for r in plain],
        "memwatch_wall_s": [round(r.wall_s, 3) for r in watched],
        "wall_ratios": [round(x, 4) for x in wall],
        "cpu_ratios": [round(x, 4) for x in cpu],
        "wall_ratio": round(statistics.median(wall), 4),
        "cpu_ratio": round(statistics.median(cpu), 4),
        "goal": example.goal,
        "same_result": len(digests) == 1 and None not in digests,
        "exit_codes": failed,
    }


def render(results: list[dict[str, object]]) -> str:
    lines = [
        "| example | plain (median) | memwatch (median) | wall ratio (rounds) | cpu ratio |"
        " goal | same weights |",
        "|---|---:|---:|---|---:|---|---|",
    ]
    for r in results:
        wall_ratios = ", ".join(f"{x:.3f}" for x in r["wall_ratios"])  # type: ignore[attr-defined]
        verdict = "pass" if r["wall_ratio"] <= r["goal"] else "MISS"  # type: ignore[operator]
        lines.append(
            f"| {r['example']} | {statistics.median(r['plain_wall_s']):.1f} s "  # type: ignore[arg-type]
            f"| {statistics.median(r['memwatch_wall_s']):.1f} s "  # type: ignore[arg-type]
            f"| ×{r['wall_ratio']:.3f} ({wall_ratios}) | ×{r['cpu_ratio']:.3f} "
            f"| ≤ {r['goal']:.2f}: {verdict} | {'yes' if r['same_result'] else 'NO'} |"
        )
    return "\n".join(lines)


def git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default=",".join(EXAMPLES), help="comma-separated names")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs per example")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds a run: checks the script runs"
    )
    args = parser.parse_args(argv)
    names = [n for n in args.examples.split(",") if n]
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown or args.rounds < 1:
        parser.error(f"unknown examples {unknown}" if unknown else "--rounds must be >= 1")
    results = [measure(EXAMPLES[n], args.rounds, args.quick) for n in names]
    print(render(results))
    if args.json:
        payload = {
            "schema": SCHEMA,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git": git_describe(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
            "python": platform.python_version(),
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(r["same_result"] and not r["exit_codes"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
