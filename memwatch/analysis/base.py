"""What every detector receives and returns, and how a detector declares itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from memwatch.evidence import Evidence, Observed
from memwatch.records import Event, Finding, MemoryCategories, RunInfo, StepRecord

E = TypeVar("E", bound=Evidence)


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
    #: Evidence already read back by earlier passes over the same events (the live
    #: analysis re-judges a window that mostly did not change): id(event) -> (event, it
    #: read back). Reading back dominates a pass (~50 µs an event); None: no memo.
    parsed: dict[int, tuple[Event, Any]] | None = None

    @cached_property
    def events_by_kind(self) -> dict[str, list[Event]]:
        grouped: dict[str, list[Event]] = {}
        for event in self.events:
            grouped.setdefault(event.kind, []).append(event)
        return grouped

    @cached_property
    def _observed(self) -> dict[type[Any], list[Any]]:
        return {}

    def events_of(self, kind: str) -> list[Event]:
        return self.events_by_kind.get(kind, [])

    def observed(self, kind: type[E]) -> list[Observed[E]]:
        """The events of evidence ``kind``, read back as typed measurements, in order.

        Raises ``EvidenceError`` on a bad stored value (the registry then skips the
        detector with one warning).
        """
        cache = self._observed
        if kind not in cache:
            memo = self.parsed
            if memo is None:
                cache[kind] = [Observed.of(kind, e) for e in self.events_of(kind.KIND)]
            else:
                read: list[Observed[E]] = []
                for event in self.events_of(kind.KIND):
                    known = memo.get(id(event))
                    if known is None or known[0] is not event:
                        known = memo[id(event)] = (event, Observed.of(kind, event))
                    read.append(known[1])
                cache[kind] = read
        return cache[kind]


DetectFn = Callable[[AnalysisInput], list[Finding]]


@dataclass(frozen=True)
class Detector:
    """One finding kind's decision: the kind it reports, the evidence it reads, the rule.

    ``consumes`` lists the evidence kinds (``memwatch.evidence``) the rule reads; a rule
    on ``StepRecord``s alone consumes none. The registry lists one ``Detector`` per kind.
    """

    kind: str
    consumes: tuple[type[Evidence], ...]
    detect: DetectFn

    def __call__(self, data: AnalysisInput) -> list[Finding]:
        return self.detect(data)
