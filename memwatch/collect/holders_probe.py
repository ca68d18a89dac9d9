"""The probe that scans who holds what at each step end and feeds three checks with it.

One bounded scan per step (``holders.py``) serves the dashboard's "what holds memory"
panel (``Holder`` rows, written only when the top set changes), ``graph-accumulation``
(``graph_probe.py``), ``memory-growth`` (``growth_probe.py``) and
``lingering-step-locals`` (``lingering_probe.py``). A check that fails is switched off on
its own with one notice (memwatch.notices); the others go on.
"""

from __future__ import annotations

from types import FrameType
from typing import TYPE_CHECKING, Any

from memwatch.collect.graph_probe import GraphChecker
from memwatch.collect.growth_probe import GrowthChecker
from memwatch.collect.holders import HolderReporter, HolderScanner
from memwatch.collect.lingering_probe import LingeringChecker
from memwatch.collect.probe import Probe

if TYPE_CHECKING:
    from memwatch.collect.tracker import Tracker
    from memwatch.records import StepRecord
    from memwatch.session import Watch


#: Steps at the start of a run that are always scanned (warm-up, first sightings).
EAGER_START = 16
#: In a quiet steady state the scan runs every ``STRIDE`` steps. Any sign of trouble (a
#: new name carrying a graph, a hit, a holder that grew) makes the next step scanned too,
#: so a leak is still confirmed within a few steps of its start.
STRIDE = 3


class HoldersProbe(Probe):
    name = "holders"

    def __init__(self, stride: int = STRIDE) -> None:
        self.stride = max(1, stride)
        self._skipped = 0
        self._passes = 0
        self.scanner = HolderScanner()
        self.reporter: HolderReporter | None = HolderReporter()
        self.graph: GraphChecker | None = GraphChecker()
        self.growth: GrowthChecker | None = GrowthChecker()
        self.lingering: LingeringChecker | None = LingeringChecker()

    @classmethod
    def for_watch(cls, watch: Watch) -> HoldersProbe:
        """``analysis="deep"`` scans every step; the default mode strides when quiet."""
        deep = getattr(watch, "analysis_mode", "default") == "deep"
        return cls(stride=1 if deep else STRIDE)

    def on_step_end(self, tracker: Tracker, record: StepRecord, frames: list[FrameType]) -> None:
        if self.lingering is not None:
            self.lingering.disarm()
        if not frames:
            return
        if not self._due():
            self._skipped += 1
            if self.graph is not None and _training_step(record):
                self.graph.mark(record.step)
            return
        self._skipped = 0
        self._passes += 1
        scan = self.scanner.scan(frames, record.step)
        try:
            if self.reporter is not None:
                try:
                    holders = self.reporter.maybe_records(scan)
                    if holders:
                        tracker.emit_holders(holders)
                except Exception as exc:
                    tracker.fail("the holders snapshot", exc)
                    self.reporter = None
            if not _training_step(record):
                return  # the holders snapshot is all an inference step gets (see below)
            if self.graph is not None:
                try:
                    self.graph.on_step_end(tracker, scan)
                except Exception as exc:
                    tracker.fail("the graph-accumulation check", exc)
                    self.graph = None
            if self.growth is not None:
                try:
                    self.growth.on_step_end(tracker, scan)
                except Exception as exc:
                    tracker.fail("the memory-growth check", exc)
                    self.growth = None
            if self.lingering is not None:
                try:
                    self.lingering.on_step_end(tracker, record, scan)
                except Exception as exc:
                    tracker.fail("the lingering-locals check", exc)
                    self.lingering = None
        finally:
            # The scan holds the user's tensors: let them go now, whatever happened.
            scan.entries.clear()
            scan.frame_tensors.clear()

    def on_stop(self, tracker: Tracker) -> None:
        if self.lingering is not None:
            try:
                self.lingering.on_stop(tracker)
            except Exception as exc:
                tracker.fail("the lingering-locals check", exc)

    def _due(self) -> bool:
        """Scan at this step end? Always while young or suspicious, else every ``stride``."""
        if self._passes < EAGER_START or self._skipped + 1 >= self.stride:
            return True
        return bool(
            (self.graph is not None and self.graph.eager)
            or (self.growth is not None and self.growth.eager)
        )

    def on_root_forward_pre(self, tracker: Tracker, module: Any, args: Any) -> None:
        if self.lingering is None:
            return
        try:
            self.lingering.on_root_forward_pre(tracker)
        except Exception as exc:
            tracker.fail("the lingering-locals check", exc)
            self.lingering = None


def _training_step(record: StepRecord) -> bool:
    """Whether the growth checks may judge this step.

    Before the first backward, and in loops that never run one, the tracker ends a "step"
    at every root forward. Those steps may be the forwards of one training iteration (an
    RL episode, an unrolled RNN, micro-batches) whose lists and graphs legitimately grow
    from forward to forward; judging them would report the iteration's own growth. Loops
    without any backward are inference: ``graph-retained-in-inference`` covers their graphs.
    """
    return record.boundary in ("optimizer", "manual", "scaler") or record.backward_calls > 0
