"""Evidence for ``retain-graph-leak``: ``backward(retain_graph=True)`` and what survives it.

Each such backward (or ``autograd.grad``) is grouped by its call site; at the step end,
``RetainGraphBackward`` records the calls, the saved bytes around them, the bytes saved
in earlier steps still alive (``stale_bytes``) and the part saved two or more steps ago
(``old_bytes``). The detector decides whether that is a leak.
"""

from __future__ import annotations

from types import CodeType
from typing import TYPE_CHECKING, Any

from memwatch.collect.frames import first_user_frame
from memwatch.collect.loop.common import Thinning, call_at, location_of, site_of
from memwatch.evidence import RetainGraphBackward

if TYPE_CHECKING:
    from memwatch.collect.probe import BackwardCall, ProbeHost
    from memwatch.records import StepRecord


class RetainRecorder:
    """The step's retain-graph backwards, by call site."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: dict[tuple[CodeType | None, int], list[Any]] = {}

    def note(self, call: BackwardCall) -> None:
        site = site_of(first_user_frame(call.frame))
        key = (site[0], site[2]) if site is not None else (None, 0)
        entry = self.calls.get(key)
        if entry is None:
            self.calls[key] = [1, call.saved_before, call.saved_after, site, call.is_grad]
        else:
            entry[0] += 1
            entry[1] = max(entry[1], call.saved_before)
            entry[2] = call.saved_after

    def record(self, tracker: ProbeHost, record: StepRecord, thinning: Thinning) -> None:
        step = record.step
        stale = record.saved_stale_bytes
        saved = record.saved_bytes
        if stale is None or saved is None:  # not counted on this step (sampling): the
            return  # retain_graph backward escalated it, so the next steps are counted
        if not self.calls or not thinning.allow("retain-graph-backward", step):
            return
        old = max(0, stale - tracker.saved.bytes_saved_in(step - 1))
        for calls, before, after, site, is_grad in self.calls.values():
            call = call_at(site, "grad" if is_grad else "backward")
            variable = None
            if call is not None:
                variable = call.receiver if call.method == "backward" else call.first_arg
            evidence = RetainGraphBackward(
                calls=calls,
                saved_before=before,
                saved_after=after,
                stale_bytes=stale,
                old_bytes=old,
                saved_bytes=saved,
                function="autograd.grad" if is_grad else "backward",
                variable=variable,
            )
            tracker.emit(evidence.event(step, location_of(site)))
