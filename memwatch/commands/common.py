"""Loading a run for the read-side commands (report, check), and what a bad file gets."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from memwatch.analysis import AnalysisInput, analyze
from memwatch.errors import MemwatchError, RunFileError
from memwatch.plaintext import plain
from memwatch.records import Finding, MemoryCategories, RunInfo, StepRecord
from memwatch.store import RunReader
from memwatch.store.liveness import run_state, run_status


@dataclass(frozen=True)
class LoadedRun:
    path: Path
    info: RunInfo
    steps: list[StepRecord]
    findings: list[Finding]
    state: str | None = None
    """How the run stands when it did not end normally (live, killed, recording stopped)."""
    categories: list[MemoryCategories] = field(default_factory=list)
    status: str = "ended"
    """The same as one word (``memwatch.store.liveness.run_status``), for the JSON report."""


def load_run(path: Path) -> LoadedRun:
    """Read a run file and judge it again with the current detectors.

    Findings are recomputed from the recorded steps and events rather than trusted from
    the file, so a report of an old or killed run uses today's detectors and the whole run.
    A file whose values the detectors cannot use is refused (``RunFileError``).
    """
    with untrusted(path), RunReader(path) as reader:
        info = reader.info()
        steps = reader.steps()
        events = reader.events()
        categories = reader.categories()
        data = AnalysisInput(
            steps=steps, events=events, info=info, final=True, categories=categories
        )
        findings = analyze(data, strict=True)
        if info.rank is not None:
            findings = [replace(f, rank=info.rank) for f in findings]
        last = steps[-1].step if steps else None
        status = run_status(info)
        return LoadedRun(
            path,
            info,
            steps,
            findings,
            state=run_state(info, last, status),
            categories=categories,
            status=status,
        )


@contextlib.contextmanager
def untrusted(path: Path) -> Iterator[None]:
    """Turn any failure while reading or rendering a run file into one ``RunFileError``.

    The file is untrusted input: a value memwatch never writes must end in one line and
    exit 2, never a traceback (exit 1 is ``check``'s "findings found").
    """
    try:
        yield
    except MemwatchError:
        raise
    except Exception as exc:
        raise RunFileError(
            f"{plain(path)} holds values memwatch cannot use "
            f"({type(exc).__name__}: {plain(exc)}); if memwatch wrote this file as it is, "
            "please report it"
        ) from None


def write_out(text: str) -> None:
    """Print a view of a run file: whatever a renderer let through, no control character
    reaches the terminal (``plain`` is the one sanitiser; newlines and tabs stay)."""
    sys.stdout.write(plain(text, multiline=True))
