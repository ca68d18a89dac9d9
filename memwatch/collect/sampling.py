"""Sampling with escalation: which steps pay for the expensive measurements.

Counting the bytes autograd saves for backward runs a Python pack/unpack pair per saved
tensor (``saved.py``): ~5 µs each, which is 15 % of a 0.6 ms step with 11 saved tensors
and 140 % of an unrolled LSTM step that saves tens of thousands (docs/measurements.md §4).
While nothing looks wrong, the hooks are therefore pushed on one step in ``stride`` only;
the stride is chosen from the measured cost so that, on average, counting costs at most
``BUDGET`` of a step, whatever the step's length (a step that saves few tensors for its
length is measured every step).

Every step is measured

* in ``analysis="deep"``;
* for the first ``WARMUP_STEPS`` steps of a run (and again after its first backward, see
  ``calm``) while counting is cheap: the warm-up's third step is not counted, so that
  the first steps tell what counting costs on this loop (counted − uncounted time), and an
  expensive warm-up stops there (``WARMUP_MAX_SHARE``, ``WARMUP_MAX_EXTRA_S``,
  ``WARMUP_MAX_SAVED``: an LSTM unrolled over 300 steps adds 150 % to a counted step,
  and eight of them cost a 15-step LBFGS run ×1.8);
* for ``ESCALATED_STEPS`` steps after any cheap signal that something may be kept
  (``escalate``): saved bytes still alive at a measured step end, host or device memory
  above its high-water mark by ``RISE_BYTES``, a ``retain_graph``/``create_graph``
  backward, a forward that builds a graph in eval mode, or evidence from any probe (but
  the routine kinds in ``ROUTINE_EVIDENCE``, which say nothing about memory). A leak keeps
  firing the signals, so it is measured on every step from the first signal on. A memory
  rise alone is answered sooner: once a counted training step ends with no saved bytes
  alive, what rose is not a graph kept across steps, and counting goes back to its
  stride (``counts_everything``; the other checks stay hurried for the escalation's steps).

A counted step whose optimizer re-runs a closure (``optimizer.step(closure)``: LBFGS runs
up to 25 passes of forward and backward a step, SAM two) counts the closure's first pass
only, unless a signal is on (``Tracker._count_first_pass_only``): the passes are alike, so
the first tells the step's saved bytes and peak, and counting all of them cost a step of
pytorch/examples' time_sequence_prediction ×1.3.

A step that was not measured from its start stores ``None`` for its saved-tensor bytes
(``StepRecord.saved_bytes``) and says so in ``StepRecord.measured``: no view or detector
reads an unmeasured value as zero. This module is the policy only (no torch): the tracker
pushes and pops the hooks.
"""

from __future__ import annotations

import math
from collections import deque

#: Steps at the start of a run that are measured while counting is cheap (warm-up, the
#: first signals); its third step is the calibration step, never measured.
WARMUP_STEPS = 8
CALIBRATION_STEP = 3
#: A warm-up goes on past its calibration step while counting costs at most this share of
#: an uncounted step, or its remaining counted steps at most ``WARMUP_MAX_EXTRA_S`` in all
#: (a run's first steps are slow for reasons of their own: a tiny step's share is noise)
#: and save at most ``WARMUP_MAX_SAVED`` tensors in all. The time a counted step shows is
#: not all it costs: the Python objects torch makes for the tensors it hands to the hooks
#: live through the forward and bring the collector's next full collection forward (~0.2
#: s with torch loaded, after ~75,000 promoted objects; the hooks' own objects are kept
#: out of the collector, ``saved._untrack``). Without that bound a REINFORCE episode of
#: 200 batch-1 forwards (1,400 saved tensors, +17 ms per counted step before the hooks'
#: objects were untracked, ~+9 ms since) counted all eight warm-up steps, and a full
#: collection followed within the next few dozen steps. (A count, not a time: the
#: first steps' times are too noisy on a loaded machine to bound this finely.)
WARMUP_MAX_SHARE = 0.25
WARMUP_MAX_EXTRA_S = 0.5
WARMUP_MAX_SAVED = 2000
#: After a signal, every step is measured for this many steps (renewed by each signal).
ESCALATED_STEPS = 16
#: Share of a step the sampled counting may cost on average.
BUDGET = 0.02
#: Cost of one saved tensor under the hooks (pack, unpack, release), a floor for the
#: estimate when step times are too noisy to show it (docs/measurements.md §4: 7 µs in a
#: tiny MLP's step, where most saved tensors are parameters; ~24 µs in an LSTM unroll,
#: where most are intermediate results that are detached).
PACK_COST_S = 7e-6
#: The longest stride: a leak that fires no cheap signal is measured within this many steps.
#: Counting that costs more than ``MAX_STRIDE * BUDGET`` of a step (128 %: an LSTM unrolled
#: over 300 steps saves ~5,000 tensors, and a counted step costs 150 % more) breaks the
#: budget at this stride; 32 had counting alone take 4.6 % of such a run.
MAX_STRIDE = 64
#: Host (RSS) or device memory this far above its high-water mark is a signal.
RISE_BYTES = 4 << 20
#: Evidence kinds that healthy loops emit every step and that say nothing about memory by
#: themselves. ``census-totals`` is a measurement, sampled by its own time budget: a census
#: that ran on a memory signal escalates explicitly (``holders_probe.py``), one that ran
#: because its budget allowed must not keep every step measured.
ROUTINE_EVIDENCE = frozenset({"unbatched-forwards", "conv-input-shapes", "census-totals"})
#: Step times kept per state (measured / not measured) for the cost estimate.
HISTORY = 9


class SavedSampling:
    """Decides, at each step end, whether the next step counts saved tensors."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled  # False: every step is measured (deep mode)
        self.stride = 1
        self.escalations = 0  # how many signals fired (for tests and the benchmark)
        self.last_reason: str | None = None
        self._steps = 0
        self._escalated_left = 0
        # The escalation running came from memory rises only, and whether a counted
        # training step has answered it since (``escalate``).
        self._memory_only = False
        self._memory_answered = False
        self._since_measured = 0
        self._measured_s: deque[float] = deque(maxlen=HISTORY)
        self._unmeasured_s: deque[float] = deque(maxlen=HISTORY)
        self._packs = 0
        self._rss_high = 0
        self._device_high = 0
        self._memory_from = WARMUP_STEPS  # memory signals count from this step on
        self._warm_from = 0  # the warm-up counts steps from here (``calm`` restarts it)
        self._warm = True  # the warm-up is on
        self._warm_checked = False  # its cost was judged after the calibration step
        self._partial = False  # the step running began before the run's first backward

    def escalate(self, reason: str, memory: bool = False) -> None:
        """A cheap signal fired: measure every step for the next ``ESCALATED_STEPS``.

        ``memory``: host or device memory rose above its high-water mark. Counting saved
        tensors answers one question about such a rise, whether autograd keeps it: a
        counted training step that ends with no saved bytes alive says it does not, and
        counting then goes back to its stride (``escalated`` stays on for the other
        checks). In a healthy RL run whose episodes grow longer, each new high kept 16
        steps of every batch-1 forward counted: a third of pytorch/examples' reinforce.py
        was counted, ×1.16 in all."""
        if not memory or self._escalated_left <= 0:
            self._memory_only = memory
        elif not self._memory_only:
            memory = False  # a stronger signal is running: it keeps every step counted
        if memory:
            self._memory_answered = False  # a new rise: count until a step answers it
        self._escalated_left = ESCALATED_STEPS
        self.escalations += 1
        self.last_reason = reason

    def calm(self) -> None:
        """The run's first backward came (after forward-only steps, if any: they were its
        first training iteration, an RL episode or an unrolled sequence, not an inference
        loop). What those forwards signalled (graphs no backward had used yet) is void,
        and memory rising over the first training steps (optimizer state, the allocator's
        first blocks) is no signal: the memory signals wait ``WARMUP_STEPS`` more steps."""
        self._escalated_left = 0
        self._memory_from = self._steps + WARMUP_STEPS
        if self._steps:
            # Forward-only steps ended before: the step running is the first training
            # iteration, and what was counted of it before this backward went to them
            # (its numbers are partial). The warm-up starts again at its end.
            self._partial = True
            self._warm_from = self._steps + 1
            self._warm = True
            self._warm_checked = False
            self._measured_s.clear()  # forward-only steps say nothing of training steps
            self._unmeasured_s.clear()
            self._packs = 0

    @property
    def memory_signals(self) -> bool:
        """Whether memory that rises is a signal yet (not in the warm-up's steps, which
        allocate optimizer state and the allocator's first blocks)."""
        return self._steps > self._memory_from

    @property
    def escalated(self) -> bool:
        return self._escalated_left > 0

    @property
    def counts_everything(self) -> bool:
        """Whether a signal keeps every step (and every pass of a closure) counted: an
        escalation, unless it is a memory rise a counted step has answered."""
        return self._escalated_left > 0 and not (self._memory_only and self._memory_answered)

    def note_evidence(self, kind: str) -> None:
        """A probe emitted evidence: a signal unless the kind is routine."""
        if kind not in ROUTINE_EVIDENCE:
            self.escalate(f"evidence {kind}")

    def step_end(
        self,
        measured: bool,
        duration_s: float,
        packs: int,
        saved_alive: int | None,
        rss_bytes: int | None,
        device_bytes: int | None,
        training_step: bool = True,
    ) -> bool:
        """A step ended (``measured``: counted from its start, ``duration_s``: the
        process CPU time it took); True to measure the next.

        ``training_step``: the step ended at an optimizer step, ``mw.step()`` or after a
        backward. Other step ends (a root forward, before any backward) may fall inside
        one training iteration, whose graph is legitimately alive: no signal there."""
        self._steps += 1
        partial, self._partial = self._partial, False
        if measured and not partial:
            self._measured_s.append(duration_s)
            self._packs = packs
        elif not measured:
            self._unmeasured_s.append(duration_s)
        if measured and saved_alive and training_step:
            self.escalate("saved bytes alive at a step end")
        elif measured and not partial and training_step and self._memory_only:
            self._memory_answered = True  # the rise is not a graph kept across steps
        self._memory_signal(rss_bytes, "host memory", "_rss_high")
        self._memory_signal(device_bytes, "device memory", "_device_high")
        if self._escalated_left > 0:
            self._escalated_left -= 1
        warm = self._warm_up() if self._warm else None
        if not self.enabled or partial or self.counts_everything or warm:
            self._since_measured = 0
            return True
        if warm is False:  # the calibration step
            self._since_measured += 1
            return False
        if measured or len(self._unmeasured_s) < 3 or self._steps % 8 == 0:
            # the medians change slowly: not every step, but at once when the first
            # uncounted steps show what counting costs
            self.stride = self._choose_stride()
        self._since_measured += 1
        if self._since_measured >= self.stride:
            self._since_measured = 0
            return True
        return False

    def _warm_up(self) -> bool | None:
        """During the warm-up, whether the next step is counted; None once it is over."""
        ended = self._steps - self._warm_from  # step ends since the warm-up began
        if ended >= WARMUP_STEPS:
            self._warm = False
            return None
        if ended == CALIBRATION_STEP - 1:
            return False  # the next step is not counted: what counting costs
        if ended >= CALIBRATION_STEP and not self._warm_checked:
            self._warm_checked = True
            if not self._warm_up_affordable(WARMUP_STEPS - ended):
                self._warm = False  # expensive counting: sampled from now on
                return None
        return True

    def _warm_up_affordable(self, left: int) -> bool:
        """Whether ``left`` more counted warm-up steps cost little: a small share of a
        step, or little time and few saved tensors in all (the fastest counted and
        uncounted steps compared; the last counted step's saved tensors)."""
        if not self._measured_s or not self._unmeasured_s:
            return True
        uncounted = min(self._unmeasured_s)
        cost = self._counting_cost(min(self._measured_s), uncounted)
        if cost <= WARMUP_MAX_SHARE * uncounted:
            return True
        return cost * left <= WARMUP_MAX_EXTRA_S and self._packs * left <= WARMUP_MAX_SAVED

    def _counting_cost(self, counted_s: float, uncounted_s: float | None) -> float:
        """What counting adds to a step: counted − uncounted time, at least the packs'
        floor (``PACK_COST_S`` each) when step times are too noisy to show it."""
        cost = self._packs * PACK_COST_S
        return cost if uncounted_s is None else max(cost, counted_s - uncounted_s)

    def _memory_signal(self, value: int | None, what: str, attr: str) -> None:
        if value is None:
            return
        high = getattr(self, attr)
        if value > high:
            setattr(self, attr, value)
            if high and self.memory_signals and value >= high + RISE_BYTES:
                self.escalate(f"{what} above its high-water mark", memory=True)

    def _choose_stride(self) -> int:
        """The stride that keeps the average cost of counting under ``BUDGET``."""
        if not self._measured_s:
            return 1
        measured = _median(self._measured_s)
        uncounted = _median(self._unmeasured_s) if self._unmeasured_s else None
        cost = self._counting_cost(measured, uncounted)
        base = max(measured - cost, 1e-6)
        return max(1, min(MAX_STRIDE, math.ceil(cost / (BUDGET * base))))


def _median(values: deque[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
