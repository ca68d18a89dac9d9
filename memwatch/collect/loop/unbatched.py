"""Evidence for ``unbatched-forward``: root forwards on single samples, rows of one tensor.

A root forward whose first input is 1-D or has a batch dimension of 1 is counted; rows
of one batch (``xb[i]``, ``xb[i:i+1]``) are views of one base tensor, compared by weakref
(not by address: a freed tensor's memory is reused by the next one). ``UnbatchedForwards``
is recorded at a step end with 4 or more such calls (a trigger: the detector decides).
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

from memwatch.collect.frames import first_user_frame
from memwatch.collect.loop.common import Site, Thinning, call_at, location_of, site_of
from memwatch.evidence import UnbatchedForwards

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost

RECORD_MIN_CALLS = 4


class UnbatchedRecorder:
    """Counts single-sample root forwards in a step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self._shared = 0
        self._base: weakref.ref[Any] | None = None
        self._site: Site | None = None
        self._shape: tuple[int, ...] = ()
        self._model = ""

    def note(self, module: Any, tensor: Any) -> None:
        """A root forward on a single sample (called from the forward pre-hook)."""
        self.calls += 1
        base = tensor._base
        if base is not None:
            previous = self._base() if self._base is not None else None
            if previous is base:
                self._shared += 1
            self._base = weakref.ref(base)
        if self._site is None:
            self._site = site_of(first_user_frame(sys._getframe(2)))
            self._shape = tuple(tensor.shape)
            self._model = type(module).__name__

    def record(self, tracker: ProbeHost, step: int, forwards: int, thinning: Thinning) -> None:
        if self.calls < RECORD_MIN_CALLS or not thinning.allow("unbatched-forwards", step):
            return
        call = call_at(self._site)
        evidence = UnbatchedForwards(
            calls=self.calls,
            forwards=forwards,
            same_base=self._shared,
            shape=self._shape,
            model=self._model,
            variable=call.callee if call else None,
        )
        tracker.emit(evidence.event(step, location_of(self._site)))
