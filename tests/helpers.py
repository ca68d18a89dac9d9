"""Shared test helpers: run a sample under memwatch in this process and read what it found."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

from memwatch.cli import main
from memwatch.commands.common import LoadedRun, load_run
from memwatch.records import Finding

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


def run_sample(sample: str | Path, *args: str, out: Path, extra: tuple[str, ...] = ()) -> LoadedRun:
    """``memwatch run --no-report --out OUT [extra] SAMPLE ARGS`` in-process; the loaded run.

    In-process keeps the suite fast (no torch import per sample); the CLI path is the one
    users take, so argv, ``__main__`` and exit status are exercised as well.
    """
    path = Path(sample)
    if not path.is_absolute():
        path = SAMPLES / path
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(["run", "--no-report", "--out", str(out), *extra, str(path), *args])
    assert status == 0, f"{path.name} exited {status}\n{stdout.getvalue()}\n{stderr.getvalue()}"
    return load_run(out)


def kinds(findings: list[Finding], at_least: str = "info") -> set[str]:
    levels = {"error": 0, "warning": 1, "info": 2}[at_least]
    return {f.kind for f in findings if {"error": 0, "warning": 1, "info": 2}[f.severity] <= levels}


def only(findings: list[Finding], kind: str) -> Finding:
    """The one finding of ``kind``: fails when there is none, or more than one."""
    matches = [f for f in findings if f.kind == kind]
    assert len(matches) == 1, (
        f"expected exactly one {kind} finding, got {len(matches)}: "
        f"{[(f.kind, f.variable, str(f.location)) for f in findings]}"
    )
    return matches[0]


def load_benchmark(script: str, name: str) -> ModuleType:
    """``benchmarks/SCRIPT`` imported as module ``name`` (the benchmarks are scripts, not
    a package): its functions and configurations, tested without running its main."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
