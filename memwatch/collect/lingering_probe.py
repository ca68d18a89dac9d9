"""Evidence for ``lingering-step-locals``: last step's tensors alive during the next forward.

In ``for x in loader: pred = model(x); loss = ...; loss.backward(); opt.step()`` the
names ``pred`` and ``loss`` still hold step N's tensors while step N+1's forward builds
its activations: the peak carries one extra output. The check is two cheap looks:

* at a step end, from the holder scan: which variables of the user frames hold tensors
  produced by this step (with a ``grad_fn``, or a different object than at the last step
  end), by weakref, with their storage bytes; armed only if together they could matter
  (``ARM_MIN_BYTES``: a cost trigger, it decides when to look);
* at the next root forward pre-hook: which of those names still hold the *same* tensor.

It records ``memwatch.evidence.LingeringLocals`` (names, bytes, the step's saved peak and
the autograd-saved bytes of earlier steps still alive at that forward) whenever those
names still hold ``ARM_MIN_BYTES`` or more; whether that matters (a graph kept, a share
of the peak) is the ``lingering-step-locals`` detector's decision. Loops
whose steps are found from the forward itself (no optimizer, no ``mw.step()``) are not
judged: their "step end" *is* the next forward.
"""

from __future__ import annotations

import dataclasses
import sys
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memwatch.collect.frames import display_path, user_frames
from memwatch.collect.holders import FrameInfo, Scan, read_locals, storage_of
from memwatch.evidence import LingeringLocals, LingeringName
from memwatch.records import Location
from memwatch.source.statements import find_assignment

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost
    from memwatch.records import StepRecord

#: Look at the next forward only when this step's fresh tensors hold this much together
#: (the detector's ``MIN_BYTES`` is the same size: smaller lingering never matters).
ARM_MIN_BYTES = 1 << 20
MIN_TENSOR_BYTES = 64 * 1024
EMIT_FIRST = 3
EMIT_EVERY = 32


@dataclass(slots=True)
class _Armed:
    frame: FrameInfo
    names: list[tuple[str, Any, int, int]]  # (name, weakref to tensor, bytes, storage key)


class LingeringChecker:
    """Arms at a step end, checks at the next root forward, emits ``lingering-locals``."""

    def __init__(self) -> None:
        self._armed: list[_Armed] | None = None
        self._previous: dict[tuple[Any, str], Any] = {}
        self._saved_peak = 0
        self._peak_allocated: int | None = None
        self._record_step = 0
        self._hits = 0
        self._where: dict[tuple[Any, str], Location | None] = {}
        self._last: tuple[LingeringLocals, Location | None, int] | None = None

    def disarm(self) -> None:
        self._armed = None

    def on_step_end(self, tracker: ProbeHost, record: StepRecord, scan: Scan) -> None:
        self._armed = None
        if record.boundary in ("forward", "end"):
            self._previous = {}
            return
        if not self._previous:
            # Cheap bound first: if even all candidates together are small, nothing to do.
            bound = 0
            for tensors in scan.frame_tensors:
                for _name, tensor in tensors:
                    if not tensor.is_leaf or tensor.nbytes >= MIN_TENSOR_BYTES:
                        bound += tensor.nbytes
            if bound < ARM_MIN_BYTES // 4:
                return
        previous = self._previous
        current: dict[tuple[Any, str], Any] = {}
        armed: list[_Armed] = []
        total = 0
        for index, tensors in enumerate(scan.frame_tensors):
            frame = scan.frames[index]
            names: list[tuple[str, Any, int, int]] = []
            for name, tensor in tensors:
                if tensor.is_leaf and tensor.nbytes < MIN_TENSOR_BYTES:
                    continue  # too small to matter, and not a product of this step's graph
                key = (frame.code, name)
                try:
                    ref = weakref.ref(tensor)
                except TypeError:
                    continue
                current[key] = ref
                old = previous.get(key)
                fresh = not tensor.is_leaf or (old is not None and old() is not tensor)
                if not fresh:
                    continue
                storage, nbytes = storage_of(tensor)
                names.append((name, ref, nbytes, storage))
                total += nbytes
            if names:
                armed.append(_Armed(frame, names))
        self._previous = current
        saved_peak = record.saved_peak_bytes  # None: not counted on this step (sampling)
        if total >= ARM_MIN_BYTES and saved_peak is not None and saved_peak > 0:
            self._armed = armed
            self._saved_peak = saved_peak
            self._peak_allocated = record.peak_allocated_bytes
            self._record_step = record.step

    def on_root_forward_pre(self, tracker: ProbeHost) -> None:
        armed = self._armed
        if armed is None:
            return
        self._armed = None
        by_code = {a.frame.code: a for a in armed}
        lingering: list[tuple[str, int, FrameInfo]] = []
        storages: set[int] = set()
        total = 0
        forward_line: int | None = None
        frames = user_frames(sys._getframe(1), limit=4)
        try:
            for frame in frames:
                entry = by_code.get(frame.f_code)
                if entry is None:
                    continue
                if forward_line is None:
                    forward_line = frame.f_lineno
                variables = dict(read_locals(frame))
                for name, ref, nbytes, storage in entry.names:
                    value = variables.get(name)
                    if value is None or value is not ref():
                        continue
                    counted = 0 if storage in storages else nbytes
                    storages.add(storage)
                    total += counted
                    lingering.append((name, counted, entry.frame))
                del variables
        finally:
            del frames
        if not lingering or total < ARM_MIN_BYTES:
            return
        self._hits += 1
        if self._hits > EMIT_FIRST and self._hits % EMIT_EVERY:
            return
        lingering.sort(key=lambda item: item[1], reverse=True)
        top_name, _, info = lingering[0]
        location = self._location(info, top_name)
        evidence = LingeringLocals(
            names=tuple(LingeringName(n, b) for n, b, _ in lingering),
            bytes=total,
            saved_peak_bytes=self._saved_peak,
            peak_allocated_bytes=self._peak_allocated,
            function=info.function,
            file=display_path(info.filename),
            forward_line=forward_line,
            tensors_from_step=self._record_step,
            occurrences=self._hits,
            stale_saved_bytes=tracker.saved.stale_bytes,
        )
        self._last = (evidence, location, self._hits)
        tracker.emit(evidence.event(tracker.step, location))

    def on_stop(self, tracker: ProbeHost) -> None:
        """Emit the final count, so the report says in how many steps it happened."""
        if self._last is None or self._last[2] == self._hits:
            return
        evidence, location, _ = self._last
        evidence = dataclasses.replace(evidence, occurrences=self._hits)
        self._last = (evidence, location, self._hits)
        tracker.emit(evidence.event(tracker.step, location))

    def _location(self, frame: FrameInfo, name: str) -> Location | None:
        key = (frame.code, name)
        if key not in self._where:
            location = frame.location
            try:
                statement = find_assignment(frame.filename, frame.first_line, frame.function, name)
                if statement is not None:
                    location = Location(
                        display_path(statement.file), statement.line, statement.function
                    )
            except Exception:
                pass
            self._where[key] = location
        return self._where[key]
