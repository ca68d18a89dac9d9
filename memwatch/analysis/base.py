"""What every detector receives and returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from memwatch.records import Event, Finding, MemoryCategories, RunInfo, StepRecord


@dataclass(frozen=True)
class AnalysisInput:
    """The facts detectors judge: steps in order, events in order, the run.

    ``final`` is True for the pass after the run ended (a detector may then report
    things it only suspects mid-run, e.g. growth over the whole run). ``categories``
    (memory by category per step, where recorded) lets a detector say what the memory is.
    """

    steps: Sequence[StepRecord]
    events: Sequence[Event] = ()
    info: RunInfo | None = None
    warmup: int = 3
    final: bool = False
    categories: Sequence[MemoryCategories] = ()

    @cached_property
    def events_by_kind(self) -> dict[str, list[Event]]:
        grouped: dict[str, list[Event]] = {}
        for event in self.events:
            grouped.setdefault(event.kind, []).append(event)
        return grouped

    def events_of(self, kind: str) -> list[Event]:
        return self.events_by_kind.get(kind, [])


Detector = Callable[[AnalysisInput], list[Finding]]
