"""Process-wide collection state: the tracker and the budget of the running watch.

One watch records per process. Collect-side code that needs "the one running now" (the
budget a nested ``find_batch_size`` should reuse, the device the tracker reads) asks
here, never the watch (``memwatch/session.py``): collection does not import the watch.
The watch registers what it installed when it starts and clears it when it stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memwatch.collect.budget import Budget
    from memwatch.collect.tracker import Tracker

_tracker: Tracker | None = None
_budget: Budget | None = None


def register(tracker: Tracker, budget: Budget | None) -> None:
    """The watch that installed ``tracker`` (and ``budget``, if any) is now recording."""
    global _tracker, _budget
    _tracker, _budget = tracker, budget


def clear(tracker: Tracker | None) -> None:
    """The watch of ``tracker`` stopped (a stale call for an older tracker changes nothing)."""
    global _tracker, _budget
    if tracker is None or tracker is _tracker:
        _tracker, _budget = None, None


def active_tracker() -> Tracker | None:
    """The tracker of the running watch, if any."""
    return _tracker


def active_budget() -> Budget | None:
    """The budget of the running watch, if it has one (``find_batch_size`` reuses it)."""
    return _budget
