"""Evidence for ``graph-retained-in-inference``: root forwards whose graph no backward used.

Whether a forward's graph was used by a backward is known exactly from a pre-hook on the
output's ``grad_fn`` (it fires when backward reaches the output), but registering one
costs a few µs, so the first forward after a backward in train mode (the training
forward) is not hooked: a backward that follows is taken to have used it. Only further
forwards before a backward, and forwards in eval mode, are hooked. A hooked forward that
one backward did not reach waits for the step's later backward passes and
``autograd.grad`` calls (a GAN's D on real, on fake and on ``fake.detach()``, used by two
backward passes; a gradient penalty through ``autograd.grad(create_graph=True)``): only
forwards that no backward or ``autograd.grad`` of the step reached by the step end are
recorded as ``ForwardWithoutBackward`` (and, when the model still trains its
dropout/batch-norm, as ``EvalPassTrainMode`` "no_backward"). The forwards a backward did
use are handed to the micro-batch recorder.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from memwatch.collect.frames import first_user_frame
from memwatch.collect.loop.common import (
    MAX_PENDING,
    Site,
    StochasticModules,
    Thinning,
    call_at,
    location_of,
    site_of,
)
from memwatch.collect.loop.eval_mode import EvalModeRecorder
from memwatch.evidence import ForwardWithoutBackward

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost
    from memwatch.records import StepRecord

_Tensor = torch.Tensor
CARRY_STEPS = 64  # forward-boundary steps a graph may wait for the run's first backward
#: On a step that counts no saved tensors, forwards followed one by one (a hook on the
#: output's ``grad_fn``, the call site) between two backwards; the ones after them are
#: only counted, as past ``MAX_PENDING``. A few show whether an evaluation pass used its
#: graphs, and their evidence makes the next steps counted (every forward followed there);
#: an RL episode of hundreds of forwards a backward does use then costs a few hooks.
UNCOUNTED_FOLLOWED = 4


def graph_tensors(output: Any) -> list[Any]:
    """Up to four tensors of a forward's output that carry autograd history."""
    if isinstance(output, _Tensor):
        return [output] if output.grad_fn is not None else []
    if isinstance(output, dict):
        items: Iterable[Any] = list(output.values())[:8]
    elif isinstance(output, (tuple, list)):
        items = output[:8]
    else:
        return []
    return [t for t in items if isinstance(t, _Tensor) and t.grad_fn is not None][:4]


class Forward:
    """One root forward that built a graph, until a backward uses it or the step ends."""

    __slots__ = (
        "bytes",
        "consumed",
        "counted",
        "hooked",
        "module",
        "saved_after",
        "site",
        "training",
        "unbatched",
    )

    def __init__(
        self, nbytes: int, saved_after: int, training: bool, unbatched: bool, counted: bool = True
    ) -> None:
        self.bytes = nbytes
        self.counted = counted  # False: its step counted no saved tensors, ``bytes`` unknown
        self.saved_after = saved_after
        self.training = training
        self.unbatched = unbatched
        self.consumed = False
        self.hooked = False
        self.module: weakref.ref[Any] | None = None
        self.site: Site | None = None

    def mark(self, grad_outputs: Any) -> None:
        """grad_fn pre-hook: a backward reached this forward's output (changes nothing)."""
        self.consumed = True


class ForwardsRecorder:
    """Root forwards with graphs, pending until a backward or the step end."""

    def __init__(self) -> None:
        self.pending: list[Forward] = []
        # hooked forwards a backward of this step has not reached yet (a later one may)
        self.waiting: list[Forward] = []
        self.last_out: weakref.ref[Any] | None = None
        self._fast = Forward(0, 0, True, False)
        self._carried = 0
        self.reset()

    def reset(self) -> None:
        self.unconsumed: list[Forward] = []
        self.waiting = []
        self.overflow = [0, 0]  # forwards past MAX_PENDING: count, bytes
        self.overflow_counted = True  # ... their bytes were all counted

    def after_forward(
        self,
        tracker: ProbeHost,
        module: Any,
        output: Any,
        saved_delta: int | None,
        continues: bool,
        unbatched: bool,
        any_backward: bool,
    ) -> bool:
        """A root forward with grad finished; True when it leaves something to record.
        ``saved_delta`` None: its step counts no saved tensors (sampling), bytes unknown."""
        if isinstance(output, _Tensor):  # the common case, without building a list
            if output.is_leaf:  # no grad_fn (read without making its Python wrapper)
                return False
            tensors = [output]
        else:
            tensors = graph_tensors(output)
            if not tensors:
                return False
        self.last_out = weakref.ref(tensors[0])
        pending = self.pending
        counted = saved_delta is not None
        nbytes = saved_delta or 0
        if continues and pending:
            pending[-1].bytes += nbytes
            pending[-1].counted = pending[-1].counted and counted
            pending[-1].saved_after = tracker.saved.current
            return False
        training = module.training
        if not pending and training and any_backward:
            # The training forward (first since a backward, train mode, in a run that has
            # backwards): the backward that follows is taken to use it. Nothing else is
            # recorded, which keeps the hot path to a few attribute reads.
            fast = self._fast  # reused: it never outlives the step (no hook holds it)
            fast.bytes = nbytes
            fast.counted = counted
            fast.saved_after = tracker.saved.current
            fast.unbatched = unbatched
            pending.append(fast)
            return False
        if len(pending) >= (MAX_PENDING if counted else UNCOUNTED_FOLLOWED):
            self.overflow[0] += 1
            self.overflow[1] += nbytes
            self.overflow_counted = self.overflow_counted and counted
            return True
        entry = Forward(nbytes, tracker.saved.current, bool(training), unbatched, counted)
        if pending or not training:
            seen: list[Any] = []
            try:
                for t in tensors:
                    fn = t.grad_fn
                    if fn is not None and not any(fn is s for s in seen):
                        seen.append(fn)
                        fn.register_prehook(entry.mark)
                entry.hooked = True
            except Exception:  # an exotic node: judge this forward like an unhooked one
                entry.consumed = entry.hooked = bool(seen)
        try:
            entry.module = weakref.ref(module)
        except TypeError:
            entry.module = None
        entry.site = site_of(first_user_frame(sys._getframe(2)))
        pending.append(entry)
        return False

    def on_backward(self) -> tuple[list[Forward], bool]:
        """A backward ran: the forwards it used, and whether some are still unused.

        An unused hooked forward is not judged yet: a later backward or ``autograd.grad``
        of the same step may reach it (``at_step_end`` judges what is left)."""
        pending = self.pending
        waiting = self.waiting
        if not pending and not waiting:
            return [], False
        if not waiting and len(pending) == 1 and not pending[0].hooked:  # the usual step
            pending.clear()
            return [], False
        consumed: list[Forward] = []
        still: list[Forward] = []
        for e in waiting:
            (consumed if e.consumed else still).append(e)
        for e in pending:
            if e.consumed or not e.hooked:
                consumed.append(e)
            elif len(still) < MAX_PENDING:
                still.append(e)
        pending.clear()
        self.waiting = still
        left = bool(still)
        # Forwards past MAX_PENDING were not hooked: judge them like the ones we saw.
        if self.overflow[0] and len(consumed) >= len(still):
            self.overflow = [0, 0]
            self.overflow_counted = True
        return consumed, left

    def at_step_end(self, record: StepRecord, any_backward: bool) -> None:
        """Pending forwards count as unused, unless they may still await a first backward."""
        if self.waiting:
            # hooked forwards that no backward of the step reached, however many ran
            left = [e for e in self.waiting if not e.consumed]
            room = MAX_PENDING - len(self.unconsumed)
            self.unconsumed.extend(left[: max(0, room)])
            self.waiting = []
        if not self.pending:
            return
        if record.boundary == "forward" and not any_backward and self._carried < CARRY_STEPS:
            # No backward yet in the whole run, and the tracker cut a step at a forward:
            # micro-batch forwards before the first backward look just like this, so the
            # graphs wait a few steps for a backward before they count as inference.
            self._carried += 1
            return
        if len(self.unconsumed) < MAX_PENDING:
            self.unconsumed.extend(self.pending[: MAX_PENDING - len(self.unconsumed)])
        self.pending.clear()

    def record(
        self,
        tracker: ProbeHost,
        record: StepRecord,
        step_forwards: int,
        modules: StochasticModules,
        thinning: Thinning,
    ) -> None:
        if not self.unconsumed and not self.overflow[0]:
            return
        entries = self.unconsumed
        count = len(entries) + self.overflow[0]
        # Bytes are known only for the forwards whose saved tensors were counted (sampling:
        # a step that counts nothing, or counts from its middle on after a signal).
        measured = [e for e in entries if e.counted]
        overflow = self.overflow if self.overflow_counted else [0, 0]
        nbytes = sum(e.bytes for e in measured) + overflow[1]
        peak = 0
        if measured:
            base = measured[0].saved_after - measured[0].bytes
            peak = max(e.saved_after for e in measured) - base
        # The first forward of a training step is recorded without its line or module (hot
        # path); the next ones of an evaluation pass have them.
        site = next((e.site for e in entries if e.site is not None), None)
        module = next((m for m in (e.module() for e in entries if e.module) if m is not None), None)
        model = type(module).__name__ if module is not None else None
        eval_count = sum(1 for e in entries if not e.training)
        train_count = count - eval_count
        step = record.step
        if module is not None and train_count > 0 and module.training:
            # forgot model.eval() as well? (forwards without backward in train mode)
            training = modules.training(module)
            if training:
                EvalModeRecorder.record(
                    tracker,
                    record,
                    "no_backward",
                    train_count,
                    site,
                    training,
                    model or "",
                    step_forwards,
                    thinning,
                )
        if not thinning.allow("forward-without-backward", step):
            return
        call = call_at(site)
        evidence = ForwardWithoutBackward(
            forwards=count,
            eval_mode_forwards=eval_count,
            bytes=nbytes,
            peak_alive_bytes=max(0, peak),
            counted_forwards=len(measured) + overflow[0],
            # a step counted only from its middle (sampling escalated it): the live counter
            saved_at_end=(
                record.saved_bytes if record.saved_bytes is not None else tracker.saved.current
            ),
            stale_at_end=(
                record.saved_stale_bytes
                if record.saved_stale_bytes is not None
                else tracker.saved.stale_bytes
            ),
            step_backwards=record.backward_calls,
            step_forwards=step_forwards,
            boundary=record.boundary,
            model=model,
            variable=(call.holder or call.callee) if call else None,
            callee=call.callee if call else None,
        )
        tracker.emit(evidence.event(step, location_of(site)))
