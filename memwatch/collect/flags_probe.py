"""Evidence for ``train-mode-smell`` (global switches): autograd debugging switches left on
while training steps run, with the line that turned each on.

Followed switches: anomaly detection (``torch.autograd.set_detect_anomaly(True)``,
``detect_anomaly()``; every backward then records and checks each node's traceback) and
the autograd profiler (``torch.autograd.profiler.profile``, ``torch.profiler.profile``,
``emit_nvtx``, ``emit_itt``; it keeps every event of the run in memory).

How, cheaply: the setters (``torch.set_anomaly_enabled``, which both anomaly APIs call,
and ``torch.autograd.profiler._enable_profiler``) are wrapped through ``ProbeHost.patch``
to remember the user's line that turned the switch on; at each step end with a backward,
the switch itself is read (``torch.is_anomaly_enabled()``,
``torch.autograd._profiler_enabled()``: one C call each). A ``GlobalFlagOn`` is recorded
when a switch is first seen on, at a few counts after, when it goes off, and at the stop:
how many training steps it stayed on is the detector's to judge.
"""

from __future__ import annotations

import functools
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
import torch.autograd.profiler as _autograd_profiler

from memwatch.collect.frames import first_user_frame
from memwatch.collect.loop.common import Site, call_at, location_of, site_of
from memwatch.collect.probe import Probe
from memwatch.evidence import GlobalFlagOn

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost
    from memwatch.records import StepRecord

ANOMALY = "anomaly-detection"
PROFILER = "autograd-profiler"
#: Steps on at which a still-on switch is recorded again (then every ``EMIT_EVERY``): a
#: *when to record* rule, so a live analysis sees it early and the run file stays small.
EMIT_AT = (1, 3, 10)
EMIT_EVERY = 50


def _profiler_enabled() -> bool:
    return bool(torch.autograd._profiler_enabled())


class _Switch:
    """One switch: where it was turned on, and its counts."""

    __slots__ = ("before", "consecutive", "first", "name", "on", "read", "set_site", "steps")

    def __init__(self, name: str, read: Any) -> None:
        self.name = name
        self.read = read
        self.set_site: Site | None = None
        self.before = False
        self.on = 0  # training steps that ended with it on
        self.steps = 0  # training steps checked
        self.consecutive = 0
        self.first = -1


class FlagsProbe(Probe):
    """Reads the autograd debugging switches at step ends (module doc)."""

    name = "flags"

    def __init__(self) -> None:
        self._switches = {
            ANOMALY: _Switch(ANOMALY, torch.is_anomaly_enabled),
            PROFILER: _Switch(PROFILER, _profiler_enabled),
        }
        self._tracker: ProbeHost | None = None
        self._failed = False  # a setter raised in here: stop following it (one notice)

    def on_start(self, tracker: ProbeHost) -> None:
        self._tracker = tracker
        for switch in self._switches.values():
            switch.before = bool(switch.read())
        tracker.patch(torch, "set_anomaly_enabled", self._wrap(torch.set_anomaly_enabled, ANOMALY))
        enable = getattr(_autograd_profiler, "_enable_profiler", None)
        if enable is not None:
            tracker.patch(_autograd_profiler, "_enable_profiler", self._wrap(enable, PROFILER))

    def _wrap(self, original: Any, name: str) -> Any:
        probe = self

        @functools.wraps(original)
        def setter(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            probe._note_set(name, sys._getframe(1))
            return result

        return setter

    def _note_set(self, name: str, caller: FrameType) -> None:
        tracker = self._tracker
        if tracker is None or tracker.off or self._failed:
            return
        try:
            switch = self._switches[name]
            if switch.read():  # turned on (or left on): this line is where
                switch.set_site = site_of(first_user_frame(caller))
                switch.before = False
        except Exception as exc:
            self._failed = True
            tracker.fail("the flags probe (setter)", exc)

    def on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        if record.backward_calls <= 0:
            return
        for switch in self._switches.values():
            switch.steps += 1
            if not switch.read():
                if switch.consecutive:
                    self._emit(tracker, switch, record.step)  # it went off: final counts
                    switch.consecutive = 0
                continue
            switch.on += 1
            switch.consecutive += 1
            if switch.first < 0:
                switch.first = record.step
            if switch.on in EMIT_AT or switch.on % EMIT_EVERY == 0:
                self._emit(tracker, switch, record.step)

    def on_stop(self, tracker: ProbeHost) -> None:
        for switch in self._switches.values():
            if switch.on:  # final counts
                self._emit(tracker, switch, tracker.step)

    @staticmethod
    def _emit(tracker: ProbeHost, switch: _Switch, step: int) -> None:
        call = call_at(switch.set_site)
        evidence = GlobalFlagOn(
            flag=switch.name,
            steps_on=switch.on,
            steps_seen=switch.steps,
            first_step=max(0, switch.first),
            consecutive=switch.consecutive,
            set_call=call.callee if call is not None else None,
            set_before_watch=switch.before and switch.set_site is None,
        )
        tracker.emit(evidence.event(step, location_of(switch.set_site)))
