"""The probe that scans who holds what at each step end and feeds three checks with it.

One bounded scan per step (``holders.py``) serves the dashboard's "what holds memory"
panel (``Holder`` rows, written only when the top set changes), ``graph-accumulation``
(``graph_probe.py``), ``memory-growth`` (``growth_probe.py``) and
``lingering-step-locals`` (``lingering_probe.py``). A check that fails is switched off on
its own with one notice (memwatch.notices); the others go on.
"""

from __future__ import annotations

import math
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch

from memwatch.collect.census import CensusResult, CensusWatch
from memwatch.collect.graph_probe import QUIET_MAX_GAP, GraphChecker
from memwatch.collect.growth_probe import GrowthChecker
from memwatch.collect.holders import (
    Entry,
    FrameInfo,
    HolderReporter,
    HolderScanner,
    Scan,
    read_locals,
    storage_of,
)
from memwatch.collect.lingering_probe import LingeringChecker
from memwatch.collect.probe import BackwardCall, Probe
from memwatch.evidence import CensusTotals

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost
    from memwatch.records import StepRecord

_Tensor = torch.Tensor
#: Variables of the loop's frame the glance reads (a module-level loop: the script's first
#: globals; its later ones are the scan's).
GLANCE_NAMES = 64
#: User frames the glance reads: the one that ended the step (``train_step``) and its
#: caller (the loop); the scan reads all of them.
GLANCE_FRAMES = 2


#: Steps at the start of a run that are always scanned (warm-up, first sightings).
EAGER_START = 16
#: In a quiet steady state the scan runs every ``STRIDE`` steps at least, and less often
#: (up to every ``MAX_STRIDE``) when it would cost more than ``SCAN_SHARE`` of the step
#: time: a 0.5 ms step cannot pay a 0.3 ms scan every third step. Any sign of trouble (a
#: new name carrying a graph, a hit, a holder that grew, an escalation of the sampling,
#: and on skipped steps the ``_glance`` at the loop's own variables) makes the next step
#: scanned, so a leak is still confirmed within a few steps of its start. The longest
#: stride lets the budget hold on sub-millisecond steps: a scan with the census's
#: remembered holders costs ~0.4 ms beside a 0.6 ms step (every 16th step it took 5 % of
#: the step, eighth round of issue 15). It grows with the run: ``EARLY_MAX_STRIDE`` over
#: its first steps, then an eighth of the steps so far, so that what only a scan sees (a
#: container that grows without a graph or a memory signal, every few steps) is seen
#: within a short run too, and within an eighth of a long one.
STRIDE = 3
EARLY_MAX_STRIDE = 16
MAX_STRIDE = 64
SCAN_SHARE = 0.02
#: The glance and the light graph check run at every training step end, unless together
#: they cost more than this share of the step (a 0.6 ms step: they take ~8 % of it): then
#: they run at every other step end while nothing is due (a leak that starts on a step
#: they skip is seen one step later: ``_rests``).
QUIET_SHARE = 0.03

# When the census (collect/census.py) runs: cost triggers, not verdicts.
#: Training steps (counted from 1) at which a census always runs: a leak present from the
#: start is found while young, and its holder followed at every scan from then on (the
#: user's empty and small containers too, so what they gain later is seen at once).
CENSUS_EARLY = (2,)
#: A census at least this often (steps) when its time allows (sampling); more often when
#: its time budget is full (a census cheap next to the steps runs every few steps).
CENSUS_SAMPLE_EVERY = 16
#: Signals between two censuses at least this many steps apart.
CENSUS_MIN_GAP = 2
#: The census's time budget: it earns this share of every step's duration and may save
#: up to ``CENSUS_BURST`` censuses' worth (at least ``CENSUS_CREDIT_S``). A census on a
#: signal may overdraw the budget by ``CENSUS_CREDIT_S`` (paid back from later steps); the
#: censuses with no signal run only on what was earned.
CENSUS_COST_SHARE = 0.005
#: ... and censuses on a memory signal (RSS or allocated bytes up ``CENSUS_RISE_BYTES``,
#: saved bytes alive at a step end) have a share of their own, spent only while memory
#: rises (a flat healthy loop never uses it).
CENSUS_SIGNAL_SHARE = 0.03
CENSUS_CREDIT_S = 0.010
CENSUS_BURST = 3
KiB = 1024
#: Cheap signals read from the step record: host RSS or device allocated bytes risen by
#: this much since the last census, or autograd-saved bytes alive at the step end.
CENSUS_RISE_BYTES = 512 * KiB
#: Census triggers that are memory signals for the sampling too (``sampling.py``); a
#: census run because its budget allowed ("early", "sample", "budget") is routine. The
#: memory rises among them are no signal while a run's first steps allocate what they keep.
CENSUS_MEMORY_RISES = frozenset({"rss", "allocated"})
CENSUS_SIGNALS = CENSUS_MEMORY_RISES | {"saved-at-step-end"}


class HoldersProbe(Probe):
    name = "holders"

    def __init__(self, stride: int = STRIDE, max_stride: int = MAX_STRIDE) -> None:
        self.stride = max(1, stride)  # the shortest stride (1: every step, deep mode)
        self.max_stride = max(self.stride, max_stride)
        self._stride = self.stride  # the stride now, from the scan's measured cost
        self._scan_s = 0.0  # what a scan costs (smoothed), census excluded
        self._step_s = 0.0  # how long a step takes (smoothed)
        # the loop's variables carrying a graph at the last glance, and its lists with a
        # graph at their end: (frame index, name) -> (id, length)
        self._glanced: set[tuple[int, str]] = set()
        self._glanced_lists: dict[tuple[int, str], tuple[int, int]] = {}
        self._glance_kinds: dict[type, int] = {}  # 1: a tensor type, 2: list, 0: neither
        self._skipped = 0
        self._passes = 0
        self._quiet_s = 0.0  # what the glance and the light check cost (smoothed)
        self._rested = False  # the last step end skipped them (``_rests``)
        self.scanner = HolderScanner()
        self.reporter: HolderReporter | None = HolderReporter()
        self.graph: GraphChecker | None = GraphChecker()
        self.growth: GrowthChecker | None = GrowthChecker()
        self.lingering: LingeringChecker | None = LingeringChecker()
        self.census: CensusWatch | None = CensusWatch()
        self._training_steps = 0
        self._census_step = -(10**9)
        # the highest RSS / allocated bytes seen (``_census_trigger``), and what they were
        # when the last census ran
        self._rss_high = 0
        self._allocated_high = 0
        self._census_rss: int | None = None
        self._census_allocated: int | None = None
        self._census_credit = 0.0
        self._signal_credit = 0.0  # censuses on memory signals (CENSUS_SIGNAL_SHARE)
        self._census_cost = 0.0  # what a census costs: the median of the last three
        self._census_costs: list[float] = []

    @classmethod
    def for_mode(cls, deep: bool) -> HoldersProbe:
        """``analysis="deep"`` scans every step; the default mode strides when quiet."""
        return cls(stride=1, max_stride=1) if deep else cls()

    def on_backward(self, tracker: ProbeHost, call: BackwardCall) -> None:
        """Note the roots a ``backward()`` frees the graph of (``GraphChecker.consumed``):
        the graph check knows without a search that they keep no earlier step's graph."""
        if self.graph is not None and not call.retain_graph and not call.is_grad:
            self.graph.note_backward(call.tensors)

    def on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        try:
            self._on_step_end(tracker, record, frames)
        finally:
            if self.graph is not None:
                self.graph.consumed.clear()

    def _on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        if self.lingering is not None:
            self.lingering.disarm()
        if not frames:
            return
        training = _training_step(record)
        duration = max(record.duration_s, 0.0)
        self._step_s = duration if not self._step_s else 0.9 * self._step_s + 0.1 * duration
        census_trigger = self._census_trigger(record) if training else ""
        if training and census_trigger in ("", "budget") and self._rests(tracker):
            self._skipped += 1
            if self.graph is not None:
                self.graph.mark(record.step)
            return
        self._rested = False
        quiet_started = time.perf_counter()
        tensors: list[tuple[int, str, Any]] = []
        glance = self._glance(frames, tensors) if training else False
        due = glance or self._due(tracker, training)
        if census_trigger == "budget" and not due:
            census_trigger = ""  # a census its budget allows waits for the next scan
        if not census_trigger and not due:
            self._skipped += 1
            if self.graph is not None and training:
                self._light_graph_check(tracker, record.step, frames, tensors)
                cost = time.perf_counter() - quiet_started
                self._quiet_s = cost if not self._quiet_s else 0.8 * self._quiet_s + 0.2 * cost
            return
        self._skipped = 0
        self._passes += 1
        started = time.perf_counter()
        census_s = 0.0
        scan = self.scanner.scan(frames, record.step)
        try:
            if self.census is not None and training:
                start: FrameType | None = sys._getframe()
                try:
                    if census_trigger:
                        result = self.census.run(start)
                        census_s = result.cost_s
                        self._census_done(tracker, record, result, census_trigger)
                    self.census.entries(scan, start)
                except Exception as exc:
                    tracker.fail("the census of tensor holders", exc)
                    self.census = None
                finally:
                    start = None
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
            self._graph_check(tracker, scan)
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
            self._choose_stride(time.perf_counter() - started - census_s, record.step)

    def _rests(self, tracker: ProbeHost) -> bool:
        """Skip the glance and the light check at this step end (``QUIET_SHARE``)? Only
        on every other step end, and never while a scan is due or anything is suspicious."""
        alternate = self._quiet_s > QUIET_SHARE * self._step_s
        if self.graph is not None:
            # a quiet name's search: every other check, as on longer steps
            self.graph.quiet_gap = 2 * QUIET_MAX_GAP if alternate else QUIET_MAX_GAP
        if self._rested or not alternate or self._due(tracker, True):
            return False
        self._rested = True
        return True

    def _choose_stride(self, cost_s: float, step: int) -> None:
        """The stride that keeps the scans under ``SCAN_SHARE`` of the step time."""
        self._scan_s = cost_s if not self._scan_s else 0.8 * self._scan_s + 0.2 * cost_s
        if self._step_s <= 0.0:
            return
        wanted = math.ceil(self._scan_s / (SCAN_SHARE * self._step_s))
        longest = min(self.max_stride, max(EARLY_MAX_STRIDE, step // 8))
        self._stride = min(longest, max(self.stride, wanted))

    def _light_graph_check(
        self,
        tracker: ProbeHost,
        step: int,
        frames: list[FrameType],
        tensors: list[tuple[int, str, Any]],
    ) -> None:
        """On a step the scan skips, the graph check still looks at the loop's own
        variables that carry a graph (what the glance read): a name that already carried
        one and starts to extend it (``running = running * 0.9 + loss`` after the
        ``detach()`` went away) is then confirmed within a few steps, not a scan stride."""
        graph = self.graph
        if graph is None:
            return
        if tensors:
            try:
                tensors[:] = [
                    t for t in tensors if not graph.resting(frames[t[0]].f_code, t[1], step)
                ]
            except Exception as exc:
                tracker.fail("the graph-accumulation check", exc)
                self.graph = None
                tensors.clear()
                return
        if not tensors:
            graph.mark(step)
            return
        light = Scan(step)
        for frame in frames[:GLANCE_FRAMES]:
            light.frames.append(FrameInfo.of(frame))
        for index, name, tensor in tensors:
            scope = "global" if light.frames[index].is_module else "local"
            nbytes = storage_of(tensor)[1]
            light.entries.append(
                Entry(name, scope, "tensor", nbytes, 1, index, tensor, root=name, grad=True)
            )
        try:
            self._graph_check(tracker, light)
        finally:
            light.entries.clear()
            tensors.clear()

    def _graph_check(self, tracker: ProbeHost, scan: Scan) -> None:
        """The graph-accumulation check on a scan (full or light); off after a failure."""
        if self.graph is None:
            return
        try:
            self.graph.on_step_end(tracker, scan)
        except Exception as exc:
            tracker.fail("the graph-accumulation check", exc)
            self.graph = None

    def _glance(self, frames: list[FrameType], tensors: list[tuple[int, str, Any]]) -> bool:
        """A few µs on every training step end: did a variable of the loop's frames (the
        step's caller and the loop around it) start carrying a graph (``total = total +
        loss``), or a list there grow by a tensor with a graph (``losses.append(loss)``)?
        Then scan now, not at the stride. The variables that carry a graph are appended to
        ``tensors`` (frame index, name, tensor) for ``_light_graph_check``."""
        carrying: set[tuple[int, str]] = set()
        lists: dict[tuple[int, str], tuple[int, int]] = {}
        kinds = self._glance_kinds
        for index, frame in enumerate(frames[:GLANCE_FRAMES]):
            for name, value in read_locals(frame, GLANCE_NAMES):
                tp = type(value)
                kind = kinds.get(tp)
                if kind is None:
                    kind = 2 if tp is list else int(issubclass(tp, _Tensor))
                    if len(kinds) < 4096:  # bounded: classes made at run time stay free
                        kinds[tp] = kind
                # ``is_leaf``: has a graph, read without making the node's Python wrapper
                if kind == 1:
                    if not value.is_leaf:
                        carrying.add((index, name))
                        tensors.append((index, name, value))
                elif kind == 2 and value:
                    last = value[-1]
                    if isinstance(last, _Tensor) and not last.is_leaf:
                        lists[index, name] = (id(value), len(value))
        before, before_lists = self._glanced, self._glanced_lists
        self._glanced, self._glanced_lists = carrying, lists
        if not carrying.issubset(before):
            return True
        for where, (key, length) in lists.items():
            old = before_lists.get(where)  # None: the list newly ends in a graph
            if old is None or (old[0] == key and length > old[1]):
                return True
        return False

    def on_stop(self, tracker: ProbeHost) -> None:
        if self.lingering is not None:
            try:
                self.lingering.on_stop(tracker)
            except Exception as exc:
                tracker.fail("the lingering-locals check", exc)

    def _census_trigger(self, record: StepRecord) -> str:
        """Why a census runs at this step end ("" = it does not): see ``CENSUS_*``."""
        if self.census is None:
            return ""
        self._training_steps += 1
        rss, allocated = record.rss_bytes, record.allocated_bytes
        if rss is not None and rss > self._rss_high:
            self._rss_high = rss
        if allocated is not None and allocated > self._allocated_high:
            self._allocated_high = allocated
        cap = max(CENSUS_CREDIT_S, CENSUS_BURST * self._census_cost)
        duration = max(record.duration_s, 0.0)
        self._census_credit = min(cap, self._census_credit + CENSUS_COST_SHARE * duration)
        self._signal_credit = min(cap, self._signal_credit + CENSUS_SIGNAL_SHARE * duration)
        if self._training_steps in CENSUS_EARLY:
            return "early"
        since = record.step - self._census_step
        if since < CENSUS_MIN_GAP:
            return ""
        cost = self._census_cost
        if self._signal_credit - cost >= -CENSUS_CREDIT_S:
            # memory rising: what the host-memory-growth check needs to tell reachable
            # data from the allocator's own growth (a budget of its own, idle when flat).
            # Rising means above the highest value seen when the last census ran: RSS that
            # swings by megabytes from step to step (large tensors freed and made again,
            # the allocator's heap) sets a new high only while something grows.
            if (
                rss is not None
                and self._census_rss is not None
                and rss - self._census_rss >= CENSUS_RISE_BYTES
            ):
                return "rss"
            if (
                allocated is not None
                and self._census_allocated is not None
                and allocated - self._census_allocated >= CENSUS_RISE_BYTES
            ):
                return "allocated"
            if record.saved_stale_bytes:  # None: not counted on this step (sampling)
                return "saved-at-step-end"
        if self._census_credit - cost < -CENSUS_CREDIT_S:
            return ""
        if since >= CENSUS_SAMPLE_EVERY and self._census_credit >= cost:
            return "sample"
        if self._census_credit >= CENSUS_BURST * cost:
            return "budget"  # its time budget allows: a cheap census runs this often
        return ""

    def _census_done(
        self, tracker: ProbeHost, record: StepRecord, result: CensusResult, trigger: str
    ) -> None:
        """Remember when, at what memory and at what cost the census ran; record what it
        found (``CensusTotals``)."""
        self._census_step = record.step
        # the highs already include this step (``_census_trigger`` chose this census)
        if record.rss_bytes is not None:
            self._census_rss = self._rss_high
        if record.allocated_bytes is not None:
            self._census_allocated = self._allocated_high
        # The median of the last three: one census slowed by a busy machine or cold caches
        # must not hold the next ones back for long, nor one fast census let many through.
        self._census_costs = [*self._census_costs[-2:], result.cost_s]
        self._census_cost = sorted(self._census_costs)[len(self._census_costs) // 2]
        if trigger in CENSUS_SIGNALS:
            self._signal_credit -= result.cost_s
        else:
            self._census_credit -= result.cost_s
        tracker.emit(
            CensusTotals(
                tensor_bytes=result.tensor_bytes,
                host_tensor_bytes=result.host_tensor_bytes,
                array_bytes=result.array_bytes,
                container_items=result.container_items,
                holders=len(result.holders),
                nodes=result.nodes,
                capped=result.capped,
                rss_bytes=record.rss_bytes,
                cost_ms=round(result.cost_s * 1000, 3),
                trigger=trigger,
            ).event(record.step)
        )
        if trigger in CENSUS_SIGNALS:
            tracker.escalate(f"a census on {trigger}", memory=trigger in CENSUS_MEMORY_RISES)

    def _due(self, tracker: ProbeHost, training: bool) -> bool:
        """Scan at this step end? Always while young or suspicious, else every ``_stride``.

        A step end that is not a training step (a root forward before the run's first
        backward, an inference loop) gets only the holders snapshot from a scan, so the
        signals that hurry the checks do not hurry it: before its first backward, an RL
        episode or an unrolled RNN ends a provisional step at each of its hundreds of root
        forwards, each with evidence that escalates, and scanning them all cost the run's
        first step ~0.2 s (a 300-step LSTM unroll)."""
        if self._passes < EAGER_START or self._skipped + 1 >= self._stride:
            return True
        if not training:
            return False
        return bool(
            tracker.escalated
            or (self.graph is not None and self.graph.eager)
            or (self.growth is not None and self.growth.eager)
        )

    def on_root_forward_pre(self, tracker: ProbeHost, module: Any, args: Any) -> None:
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
