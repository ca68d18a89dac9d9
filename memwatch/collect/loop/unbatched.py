"""Evidence for ``unbatched-forward``: root forwards on single samples, rows of one tensor.

A root forward whose first input is 1-D or has a batch dimension of 1 is counted. The
batch already exists when the samples are

* rows of one tensor (``xb[i]``, ``xb[i:i+1]``): views of one base tensor, compared by
  weakref (not by address: a freed tensor's memory is reused by the next one); or
* elements of one list the caller holds (``for img in imgs: model(img.unsqueeze(0))``,
  images of different sizes): the sample, or the tensor it is a view of, is found by
  identity in a list or tuple among the calling frame's variables (checked on the first
  ``LIST_CHECKS_PER_STEP`` calls of a step only, a bounded look).

A policy acting in an environment makes each input from the last output: neither. Its
``UnbatchedForwards`` is recorded at a step end with 4 or more such calls (a trigger: the
detector decides).
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

from memwatch.collect.frames import first_user_frame
from memwatch.collect.holders import read_locals
from memwatch.collect.loop.common import (
    ROUTINE_EMIT_FREELY,
    Site,
    Thinning,
    call_at,
    location_of,
    site_of,
)
from memwatch.evidence import UnbatchedForwards

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost

RECORD_MIN_CALLS = 4
LIST_CHECKS_PER_STEP = 3
_LIST_MIN = 4  # a list of fewer samples is not "the batch"
_LIST_SCAN = 256  # elements looked at per list
_LOCALS_SCAN = 64  # variables looked at per frame


def _listed_in(frame: Any, sample: Any) -> bool:
    """Whether ``sample`` is an element of a list or tuple (or the first item of a pair
    in one) held by a variable of ``frame``, with more samples after it: the samples exist
    together already. The last element does not count: a rollout that appends each state
    to a list and then acts on it (``states.append(s); policy(s)``) is sequential. A
    comprehension's frame (3.10/3.11) holds only its iterator: its caller is looked at."""
    variables = read_locals(frame, _LOCALS_SCAN)
    if frame.f_code.co_name.startswith("<") and frame.f_back is not None:
        variables += read_locals(frame.f_back, _LOCALS_SCAN)
    for _name, value in variables:
        if type(value) not in (list, tuple) or len(value) < _LIST_MIN:
            continue
        last = len(value) - 1
        for index, item in enumerate(value[:_LIST_SCAN]):
            if item is sample or (type(item) is tuple and item and item[0] is sample):
                return index < last
    return False


class UnbatchedRecorder:
    """Counts single-sample root forwards in a step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self._shared = 0
        self._base: weakref.ref[Any] | None = None
        self._listed = 0
        self._list_checks = 0
        self._site: Site | None = None
        self._shape: tuple[int, ...] = ()
        self._model = ""

    def note(self, module: Any, tensor: Any, weight: int = 1) -> None:
        """A root forward on a single sample (called from the forward pre-hook), standing
        for ``weight`` of them (``Tracker._thin``)."""
        self.calls += weight
        base = tensor._base
        if base is not None:
            previous = self._base() if self._base is not None else None
            if previous is base:
                self._shared += weight
            self._base = weakref.ref(base)
        frame = None
        if self._site is None:
            frame = first_user_frame(sys._getframe(2))
            self._site = site_of(frame)
            self._shape = tuple(tensor.shape)
            self._model = type(module).__name__
        if self._list_checks < LIST_CHECKS_PER_STEP:
            self._list_checks += 1
            frame = frame if frame is not None else first_user_frame(sys._getframe(2))
            if frame is not None and _listed_in(frame, base if base is not None else tensor):
                self._listed += 1

    def record(self, tracker: ProbeHost, step: int, forwards: int, thinning: Thinning) -> None:
        if self.calls < RECORD_MIN_CALLS or not thinning.allow(
            "unbatched-forwards", step, ROUTINE_EMIT_FREELY
        ):
            return
        call = call_at(self._site)
        evidence = UnbatchedForwards(
            calls=self.calls,
            forwards=forwards,
            same_base=self._shared,
            listed=self._listed,
            listed_checked=self._list_checks,
            shape=self._shape,
            model=self._model,
            variable=call.callee if call else None,
        )
        tracker.emit(evidence.event(step, location_of(self._site)))
