"""Helpers for the framework-integration tests: collect what the callbacks log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memwatch.records import Event, Finding
from memwatch.store import RunReader


class Lines(logging.Handler):
    """Keeps the formatted lines a logger emitted (frameworks may stop propagation)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def logged(name: str) -> Iterator[list[str]]:
    logger = logging.getLogger(name)
    handler = Lines()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def above_info(findings: list[Finding]) -> list[str]:
    return [f"{f.kind}: {f.title}" for f in findings if f.severity in ("error", "warning")]


def phases(path: Path) -> list[tuple[str, str]]:
    """(phase, state) of every ``phase`` event in a run file, in order."""
    with RunReader(path) as reader:
        events: list[Event] = reader.events()
    return [(str(e.data["phase"]), str(e.data["state"])) for e in events if e.kind == "phase"]
