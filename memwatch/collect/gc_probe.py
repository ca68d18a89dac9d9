"""Objects that hold tensors and lie on a reference cycle: freed only by the cyclic gc.

A reference cycle (``self.which_act = self.relu_act``, a forward hook closure capturing
``self``, ``Storage(_parent=self)``) keeps everything it references alive after the
program drops it, until Python's cyclic garbage collector runs; its tensors lag behind,
and on a GPU the next model or batch may meet an out-of-memory error first. This probe
measures that lag for the objects the program names at step ends; the detector
(``analysis/detectors/tensors_in_gc_cycle.py``) decides whether it is a problem.

How, at each step end (bounded, nothing on the per-forward path):

1. **Sightings**: the user frames' variables (and one level of attributes of plain
   objects held by them) that are ``nn.Module``s or the program's own objects. A new one
   is walked once (``gc_walk``, bounded): if a path leads from it back to itself it is
   *watched* through a weak reference (never kept alive) and its tensor bytes are
   noted; otherwise it is remembered as clean and walked once more after
   ``REPROFILE_AFTER`` steps (a cycle made later, on first use). A class whose first
   ``CLEAN_CLASS_AFTER`` objects had no cycle is not walked any more.
2. **Departures**: a watched object no longer bound where it was seen, but alive, is
   tested for unreachability without collecting (``gc_walk.is_garbage``, the collector's
   own test on the walked set). Unreachable: it is *pending* (garbage only ``gc`` frees);
   reachable: tested again after 1, 2, 4 ... steps (at most ``MAX_CHECKS``).
3. **Deaths**: a ``gc.callbacks`` callback marks collections; a watched object whose weak
   reference dies between a collection's "start" and "stop" was reclaimed by the
   collector, otherwise by reference counting (healthy).

It never calls ``gc.collect()`` or ``gc.set_debug`` and never changes the program's gc
settings; its callback is removed at stop. When to walk is a trigger (``MAX_*``,
``REPROFILE_AFTER``), not a verdict: counts, bytes and lags are emitted as
``GcCycleGarbage`` evidence per cycle (object type and path), at most every
``EMIT_EVERY`` steps while they change, and at stop.
"""

from __future__ import annotations

import gc
import itertools
import re
import sys
import weakref
from dataclasses import dataclass, field
from types import FrameType, FunctionType
from typing import TYPE_CHECKING, Any

from torch import nn

from memwatch.collect import gc_walk
from memwatch.collect.frames import display_path, is_user_file
from memwatch.collect.holders import read_locals
from memwatch.collect.probe import Probe
from memwatch.evidence import GcCycleGarbage
from memwatch.records import Location
from memwatch.source.backrefs import find_back_reference

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost
    from memwatch.records import StepRecord

#: Objects watched at once (cycles); beyond it new ones are not watched.
MAX_WATCHED = 512
#: Distinct cycles (class and path) followed in one run.
MAX_CYCLES = 256
#: Objects remembered as walked without a cycle.
MAX_CLEAN = 2048
#: New objects walked per step end.
MAX_PROFILES_PER_STEP = 4
#: Departed objects tested for unreachability per step end.
MAX_CHECKS_PER_STEP = 8
#: Unreachability tests of one departed object that stays reachable.
MAX_CHECKS = 4
#: A clean object is walked again once, this many steps after its first walk.
REPROFILE_AFTER = 8
#: After this many objects of one class were walked without a cycle (and none with one),
#: new objects of that class are not walked (a plain batch class built every step).
CLEAN_CLASS_AFTER = 8
#: Attributes of a plain object looked at for sightings.
MAX_ATTRIBUTES = 32
#: A changing cycle's evidence is emitted at most every this many steps (more rarely
#: after every 16 emits), and at stop.
EMIT_EVERY = 4
#: Objects tested at stop.
MAX_CHECKS_AT_STOP = 64

_WATCHING, _PENDING = 0, 1
_INDEX = re.compile(r"\[-?\d+\]")
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"builtins", "__future__"}


@dataclass(slots=True)
class _Cycle:
    """What is known of one cycle (object type and path) over the run."""

    key: str
    object_type: str
    user_type: bool
    hops: tuple[tuple[str, str], ...]
    variable: str | None
    created_at: Location | None
    first_step: int | None = None  # the first step an object was shown to be garbage
    object_bytes: int = 0
    watched: int = 0
    garbage_objects: int = 0
    unreachable: int = 0
    reclaimed_by_gc: int = 0
    freed_by_refcount: int = 0
    refcount_after_unreachable: int = 0
    pending: int = 0
    pending_bytes: int = 0
    peak_pending: int = 0
    peak_pending_bytes: int = 0
    peak_reclaimed_at_once: int = 0
    longest_pending_steps: int = 0
    at_stop: int = 0
    at_stop_bytes: int = 0
    dirty: bool = True
    last_emit: int | None = None
    emits: int = 0

    def evidence(self) -> GcCycleGarbage:
        return GcCycleGarbage(
            cycle=self.key,
            variable=self.variable,
            object_type=self.object_type,
            user_type=self.user_type,
            hops=self.hops,
            object_bytes=self.object_bytes,
            watched=self.watched,
            garbage_objects=self.garbage_objects,
            unreachable=self.unreachable,
            reclaimed_by_gc=self.reclaimed_by_gc,
            freed_by_refcount=self.freed_by_refcount,
            refcount_after_unreachable=self.refcount_after_unreachable,
            pending=self.pending,
            peak_pending=self.peak_pending,
            peak_pending_bytes=self.peak_pending_bytes,
            peak_reclaimed_at_once=self.peak_reclaimed_at_once,
            longest_pending_steps=self.longest_pending_steps,
            at_stop=self.at_stop,
            at_stop_bytes=self.at_stop_bytes,
            first_step=self.first_step,
            created_at=self.created_at.to_dict() if self.created_at else None,
        )


@dataclass(slots=True)
class _Watched:
    """One watched object: a weak reference and where it was last seen."""

    ref: Any
    key: int  # id of the object (valid while the weak reference lives)
    cycle: _Cycle
    name: str
    last_seen: int
    bytes: int
    state: int = _WATCHING
    pending_since: int = 0
    checks: int = 0
    next_check: int = 0


@dataclass(slots=True)
class _Collection:
    """The collection running now (set by the gc callback)."""

    running: bool = False
    reclaimed: dict[str, int] = field(default_factory=dict)


class _CallbackHandle:
    """Removes the gc callback at stop (``ProbeHost.add_handle``); never raises."""

    def __init__(self, callback: Any) -> None:
        self.callback = callback

    def remove(self) -> None:
        try:
            gc.callbacks.remove(self.callback)
        except ValueError:
            pass


class GcCycleProbe(Probe):
    name = "gc-cycle"
    step_ends = "measured"  # a few objects per measured step suffice (sampling.py)

    def __init__(self) -> None:
        self._watched: dict[int, _Watched] = {}  # id(object) -> watched
        self._by_ref: dict[int, _Watched] = {}  # id(weak reference) -> watched
        self._clean: dict[int, tuple[Any, int]] = {}  # id -> (weak ref, reprofile step)
        self._cycles: dict[str, _Cycle] = {}
        self._kinds: dict[type, bool] = {}
        self._clean_classes: dict[type, int] = {}  # walks without a cycle; -1: has cycles
        self._collection = _Collection()
        self._step = 0
        self._stopped = False

    # -- start / stop ---------------------------------------------------------------------
    def on_start(self, tracker: ProbeHost) -> None:
        callback = self._on_gc
        gc.callbacks.append(callback)
        tracker.add_handle(_CallbackHandle(callback))

    def on_stop(self, tracker: ProbeHost) -> None:
        """Test what is still watched (the program's last objects may be garbage now),
        emit every cycle that changed, and let every weak reference go."""
        try:
            self._step = tracker.step
            checked = 0
            for watched in list(self._watched.values()):
                if watched.state != _WATCHING or checked >= MAX_CHECKS_AT_STOP:
                    continue
                checked += 1
                self._test(watched, at_stop=True)
            for cycle in self._cycles.values():
                if cycle.dirty or cycle.last_emit is None:
                    self._emit(tracker, cycle)
        finally:
            self._stopped = True
            self._watched.clear()
            self._by_ref.clear()
            self._clean.clear()

    # -- the gc and weak-reference callbacks (any time, any thread: counters only) ---------
    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        try:
            collection = self._collection
            if phase == "start":
                collection.running = True
                return
            collection.running = False
            if collection.reclaimed:
                for key, count in collection.reclaimed.items():
                    cycle = self._cycles.get(key)
                    if cycle is not None and count > cycle.peak_reclaimed_at_once:
                        cycle.peak_reclaimed_at_once = count
                collection.reclaimed.clear()
        except Exception:  # never an "Exception ignored in gc callback" in the program
            pass

    def _died(self, ref: Any) -> None:
        try:
            self._count_death(ref)
        except Exception:  # never an "Exception ignored in weakref callback"
            pass

    def _count_death(self, ref: Any) -> None:
        watched = self._by_ref.pop(id(ref), None)
        if watched is None or self._stopped:
            return
        if self._watched.get(watched.key) is watched:
            del self._watched[watched.key]
        cycle = watched.cycle
        if watched.state == _PENDING:
            cycle.pending -= 1
            cycle.pending_bytes -= watched.bytes
            waited = self._step - watched.pending_since
            if waited > cycle.longest_pending_steps:
                cycle.longest_pending_steps = waited
        if self._collection.running:
            if watched.state == _WATCHING:
                cycle.garbage_objects += 1
                if cycle.first_step is None:
                    cycle.first_step = self._step
            cycle.reclaimed_by_gc += 1
            reclaimed = self._collection.reclaimed
            reclaimed[cycle.key] = reclaimed.get(cycle.key, 0) + 1
        elif watched.state == _PENDING:
            cycle.refcount_after_unreachable += 1
        else:
            cycle.freed_by_refcount += 1
        cycle.dirty = True

    # -- step end ---------------------------------------------------------------------------
    def on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        step = self._step = record.step
        if not frames:
            return
        seen = self._sightings(frames)
        try:
            self._note(seen, step)
        finally:
            seen.clear()
        self._departures(step)
        self._lag(step)
        for cycle in self._cycles.values():
            # every EMIT_EVERY steps at first, sparser as a long run keeps changing
            every = EMIT_EVERY * (1 + cycle.emits // 16)
            if cycle.dirty and (cycle.last_emit is None or step - cycle.last_emit >= every):
                self._emit(tracker, cycle)

    def _lag(self, step: int) -> None:
        """How long the longest-waiting unreachable object of each cycle has waited."""
        if not self._watched:
            return
        for watched in list(self._watched.values()):
            if watched.state == _PENDING:
                cycle = watched.cycle
                waited = step - watched.pending_since
                if waited > cycle.longest_pending_steps:
                    cycle.longest_pending_steps = waited  # sent with the next change

    def _emit(self, tracker: ProbeHost, cycle: _Cycle) -> None:
        cycle.dirty = False
        cycle.last_emit = self._step
        cycle.emits += 1
        tracker.emit(cycle.evidence().event(self._step, cycle.created_at))

    def _candidate(self, tp: type) -> bool:
        known = self._kinds.get(tp)
        if known is None:
            known = _is_candidate_type(tp)
            if len(self._kinds) < 4096:
                self._kinds[tp] = known
        return known

    def _sightings(self, frames: list[FrameType]) -> list[tuple[str, Any]]:
        """(name, object) for the modules and program objects the frames name."""
        found: list[tuple[str, Any]] = []
        ids: set[int] = set()
        kinds = self._kinds
        for frame in frames:
            is_module = not (frame.f_code.co_flags & 0x0001)
            for name, value in read_locals(frame):
                candidate = kinds.get(type(value))  # inline: this loop runs every step end
                if candidate is None:
                    candidate = self._candidate(type(value))
                if not candidate or (is_module and name[:2] == "__") or id(value) in ids:
                    continue
                ids.add(id(value))
                found.append((name, value))
                if isinstance(value, nn.Module):
                    continue
                try:
                    attrs = list(itertools.islice(vars(value).items(), MAX_ATTRIBUTES))
                except Exception:
                    continue
                for attr, inner in attrs:
                    if self._candidate(type(inner)) and id(inner) not in ids:
                        ids.add(id(inner))
                        found.append((f"{name}.{attr}", inner))
        return found

    def _note(self, seen: list[tuple[str, Any]], step: int) -> None:
        profiles = 0
        for name, value in seen:
            key = id(value)
            watched = self._watched.get(key)
            if watched is not None and watched.ref() is value:
                watched.last_seen = step
                watched.name = name
                if watched.state == _WATCHING:
                    watched.checks = 0
                continue
            clean = self._clean.get(key)
            if clean is not None and clean[0]() is value and (clean[1] < 0 or step < clean[1]):
                continue
            if profiles >= MAX_PROFILES_PER_STEP or len(self._watched) >= MAX_WATCHED:
                continue
            if self._clean_classes.get(type(value), 0) >= CLEAN_CLASS_AFTER:
                continue
            profiles += 1
            self._profile(name, value, step, again=clean is not None and clean[0]() is value)

    def _profile(self, name: str, value: Any, step: int, again: bool) -> None:
        """Walk a new object: watch it if it lies on a cycle, else remember it as clean."""
        found = gc_walk.walk(value)
        try:
            hops = gc_walk.cycle_path(found)
            nbytes = gc_walk.tensor_bytes(found) if hops is not None else 0
            on_cycle = gc_walk.cycle_objects(found)[1:] if hops is not None else []
            user = hops is not None and any(_user_object(o) for o in [*on_cycle, value])
        finally:
            found.clear()
        classes = self._clean_classes
        if hops is None:
            if classes.get(type(value), 0) >= 0 and len(classes) < 4096:
                classes[type(value)] = classes.get(type(value), 0) + 1
            if len(self._clean) >= MAX_CLEAN:
                self._clean.clear()
            self._clean[id(value)] = (weakref.ref(value), -1 if again else step + REPROFILE_AFTER)
            return
        classes[type(value)] = -1
        self._clean.pop(id(value), None)
        for other in on_cycle:  # the same cycle seen from another of its objects: once
            if self._candidate(type(other)):
                self._clean[id(other)] = (weakref.ref(other), -1)
        on_cycle.clear()
        cycle = self._cycle(name, value, tuple(hops), step, user)
        if cycle is None:
            return
        ref = weakref.ref(value, self._died)
        watched = _Watched(ref, id(value), cycle, name, step, nbytes)
        self._watched[id(value)] = watched
        self._by_ref[id(ref)] = watched
        cycle.watched += 1
        cycle.object_bytes = max(cycle.object_bytes, nbytes)
        cycle.dirty = True

    def _cycle(
        self, name: str, value: Any, hops: tuple[tuple[str, str], ...], step: int, user: bool
    ) -> _Cycle | None:
        tp = type(value)
        object_type = getattr(tp, "__qualname__", tp.__name__)
        # One cycle for every object built the same way: positions and hook ids vary.
        key = object_type + "".join(_INDEX.sub("[]", label) for label, _ in hops)
        cycle = self._cycles.get(key)
        if cycle is None:
            if len(self._cycles) >= MAX_CYCLES:
                return None
            cycle = _Cycle(
                key,
                object_type,
                user,
                hops,
                name,
                _created_at(value, hops),
            )
            self._cycles[key] = cycle
        cycle.variable = name
        return cycle

    def _departures(self, step: int) -> None:
        if not self._watched:
            return
        checks = 0
        for watched in list(self._watched.values()):
            if watched.state != _WATCHING or watched.last_seen >= step:
                continue
            if watched.checks >= MAX_CHECKS or step < watched.next_check:
                continue
            if checks >= MAX_CHECKS_PER_STEP:
                break
            checks += 1
            verdict = self._test(watched)
            if verdict is not True:
                watched.checks += 1
                watched.next_check = step + (1 << watched.checks)

    def _test(self, watched: _Watched, at_stop: bool = False) -> bool | None:
        """Is the watched object unreachable now? If so, mark it pending (at stop: count
        it apart, the run is over)."""
        found = _walk_weak(watched.ref)
        if found is None:
            return None
        try:
            verdict = gc_walk.is_garbage(found)
            nbytes = gc_walk.tensor_bytes(found) if verdict else 0
        finally:
            found.clear()
        if verdict is True and at_stop:
            watched.cycle.at_stop += 1
            watched.cycle.at_stop_bytes += nbytes
            watched.cycle.dirty = True
        elif verdict is True:
            cycle = watched.cycle
            watched.state = _PENDING
            watched.pending_since = self._step
            watched.bytes = nbytes
            cycle.object_bytes = max(cycle.object_bytes, nbytes)
            cycle.unreachable += 1
            cycle.garbage_objects += 1
            if cycle.first_step is None:
                cycle.first_step = self._step
            cycle.pending += 1
            cycle.pending_bytes += nbytes
            if cycle.pending > cycle.peak_pending:
                cycle.peak_pending = cycle.pending
            cycle.peak_pending_bytes = max(cycle.peak_pending_bytes, cycle.pending_bytes)
            cycle.dirty = True
        return verdict


def _walk_weak(ref: Any) -> gc_walk.Walk | None:
    """Walk the referent of ``ref`` holding it only in the walk (for ``is_garbage``)."""
    value = ref()
    if value is None:
        return None
    found = gc_walk.walk(value)
    del value
    return found


def _is_candidate_type(tp: type) -> bool:
    """An ``nn.Module`` or an instance of a class of the program (weak-referenceable)."""
    try:
        if issubclass(tp, nn.Module):
            return True
        if not getattr(tp, "__weakrefoffset__", 0) or not getattr(tp, "__dictoffset__", 0):
            return False
        if issubclass(tp, (type, FunctionType, BaseException)):
            return False
        return _user_class(tp)
    except Exception:
        return False


def _user_object(obj: Any) -> bool:
    """An instance of the program's class, or the program's function or bound method."""
    code = getattr(obj, "__code__", None) or getattr(
        getattr(obj, "__func__", None), "__code__", None
    )
    if code is not None:
        return is_user_file(code.co_filename)
    return _user_class(type(obj))


def _user_class(tp: type) -> bool:
    """A class defined in the program's own files (not torch, a library or stdlib)."""
    module = getattr(tp, "__module__", "") or ""
    if module.split(".", 1)[0] in _STDLIB or module.startswith(("memwatch", "torch")):
        return False
    filename = _class_file(tp)
    return filename is not None and is_user_file(filename)


def _class_file(tp: type) -> str | None:
    """The file a class is defined in: its module's, else one of its functions'."""
    module = sys.modules.get(getattr(tp, "__module__", "") or "")
    filename = getattr(module, "__file__", None)
    if filename:
        return str(filename)
    for value in vars(tp).values():
        code = getattr(value, "__code__", None) or getattr(
            getattr(value, "__func__", None), "__code__", None
        )
        if code is not None and not code.co_filename.startswith("<"):
            return str(code.co_filename)  # (a dataclass's generated methods say "<string>")
    return None


def _class_line(tp: type) -> int:
    for value in vars(tp).values():
        code = getattr(value, "__code__", None)
        if code is not None and not code.co_filename.startswith("<"):
            return int(code.co_firstlineno)
    return 0


def _created_at(value: Any, hops: tuple[tuple[str, str], ...]) -> Location | None:
    """The statement that stores a name of the cycle, in the classes on it."""
    try:
        names: list[str] = []
        for label, described in reversed(hops):
            if described.startswith("function "):
                names.append(described.rsplit(".", 1)[-1].split(" ")[-1])
            if label.startswith(".") and not label.startswith(".__"):
                names.append(label[1:])
        classes: list[tuple[str, str, int]] = []
        for tp in (type(value), *_types_on(value, hops)):
            filename = _class_file(tp)
            if filename is not None and is_user_file(filename):
                entry = (filename, tp.__name__, _class_line(tp))
                if entry not in classes:
                    classes.append(entry)
        if not names or not classes:
            return None
        found = find_back_reference(classes, names)
        if found is None:
            return None
        return Location(display_path(found.file), found.line, found.function)
    except Exception:
        return None


def _types_on(value: Any, hops: tuple[tuple[str, str], ...]) -> list[type]:
    """The classes named on the path that are the program's (by name, from the root's
    module), for the back-reference search."""
    module = sys.modules.get(getattr(type(value), "__module__", "") or "")
    found: list[type] = []
    for _, described in hops:
        candidate = getattr(module, described, None) if module is not None else None
        if isinstance(candidate, type):
            found.append(candidate)
    return found
