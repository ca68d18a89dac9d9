"""Evidence for ``oom-retry-loop``: who holds memory at an OOM, and at the retry.

The classic batch-size back-off catches the OOM and tries again, but the failed attempt's
``pred``, ``loss`` and graph often stay referenced (by variables of a frame still on the
stack, or by the exception, whose traceback keeps every frame it passed through), so the
retry starts with the memory it needs already taken. This probe records, cheaply and only
when an OOM happens:

* at the OOM (``on_oom``): bytes in use, the bytes of the failed attempt, and which names
  in the user's frames held how many bytes (added to the tracker's ``oom`` event);
* at the next root forward (the retry, ``oom-retry`` event): how much of the failed
  attempt is still alive, who holds it (local names, the exception — bound to an
  ``except ... as e`` name or still being handled, ``sys.exc_info()`` — with the frames
  its traceback keeps, tensors' autograd graphs), and the bytes in use against the level
  before the failed attempt.

Identity of the failed attempt's memory: with tensor tracking (``--budget`` on CPU) every
storage has a sequence number, so "created during the attempt and still alive" is exact.
Otherwise (CUDA) the probe takes weakrefs, at OOM time, to the storages the failing
frames reference, and checks at the retry which are still alive (graph-held activations
are then visible only through the saved-for-backward counter).

An attempt starts at the first root forward after a step boundary or an OOM; its input
batch (created just before) counts as part of it when the tensor owns its whole storage.
Scans are bounded (frames, locals, container items) and run only at OOMs.
"""

from __future__ import annotations

import itertools
import sys
import weakref
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch

from memwatch.collect.frames import frame_location, is_user_file, user_frames
from memwatch.collect.holders import read_locals
from memwatch.collect.oom import is_oom_error
from memwatch.collect.probe import Probe
from memwatch.evidence import OomRetry

if TYPE_CHECKING:
    from memwatch.collect.budget import TensorTracker
    from memwatch.collect.probe import ProbeHost

_MAX_DETAILED = 32  # OOMs per run that get the holder scans (a loop of OOMs stays cheap)
_MAX_FRAMES = 8
_MAX_TB_FRAMES = 32
_MAX_LOCALS = 64
_MAX_ITEMS = 32
_MAX_MODULE_TENSORS = 2048
_MAX_HOLDERS = 8
_Tensor = torch.Tensor


@dataclass
class _Pending:
    """What the retry check needs from one OOM (weak references only)."""

    index: int
    step: int
    in_use: int | None
    attempt_bytes: int
    pre_attempt_bytes: int | None
    saved_before_attempt: int
    exceptions: list[weakref.ref[Any]] = field(default_factory=list)
    ooms: int = 1  # OOMs before the retry's first forward (one attempt, several raises)
    seqs: frozenset[int] | None = None  # tracked mode: the attempt's storages
    refs: dict[int, tuple[Any, int]] = field(default_factory=dict)  # untracked: weakrefs
    location: str | None = None


class _Reach:
    """Storages reachable from a value: tensors, containers, modules, optimizers, objects."""

    def __init__(self, keep_objects: bool = False, model_state: bool = True) -> None:
        self.storages: dict[int, int] = {}
        # False: modules and optimizers reached through other objects (``self.model`` of a
        # trainer) are skipped: their parameters, gradients and state predate the attempt.
        self.model_state = model_state
        self.graph_keys: set[int] = set()  # storages of tensors that carry a grad_fn
        self.objects: dict[int, Any] | None = {} if keep_objects else None
        self._seen: set[int] = set()

    def add(self, value: Any, depth: int = 0) -> None:
        # Types only (no isinstance/hasattr on the value): proxies run code on attribute
        # access (docs/measurements.md §2: a scan tripped torch.distributed deprecation warnings).
        kind = type(value)
        if issubclass(kind, _Tensor):
            self._tensor(value)
            return
        if depth >= 3 or id(value) in self._seen:
            return
        if kind in (list, tuple, set, frozenset):
            self._seen.add(id(value))
            for item in itertools.islice(value, _MAX_ITEMS):
                self.add(item, depth + 1)
        elif kind is dict:
            self._seen.add(id(value))
            for item in itertools.islice(value.values(), _MAX_ITEMS):
                self.add(item, depth + 1)
        elif issubclass(kind, torch.nn.Module):
            self._seen.add(id(value))
            if self.model_state:
                self._module(value)
        elif issubclass(kind, torch.optim.Optimizer):
            self._seen.add(id(value))
            if not self.model_state:
                return
            for state in itertools.islice(value.state.values(), _MAX_MODULE_TENSORS):
                self.add(state, depth + 1)
        elif issubclass(kind, (BaseException, type)) or callable(value):
            return  # exceptions are followed explicitly; classes, functions hold no step data
        elif depth < 2 and kind.__dictoffset__ != 0 and kind.__module__ != "builtins":
            # A trainer-like object (``self.pred = ...``): one level of its attributes.
            try:
                attrs = object.__getattribute__(value, "__dict__")
            except Exception:
                return
            if type(attrs) is dict:
                self._seen.add(id(value))
                for item in itertools.islice(attrs.values(), _MAX_ITEMS):
                    self.add(item, depth + 2)

    def _tensor(self, tensor: Any) -> None:
        try:
            if tensor.is_meta or tensor.layout is not torch.strided:
                return
            storage = tensor.untyped_storage()
            key = storage._cdata
            self.storages[key] = int(storage.nbytes())
            if self.objects is not None:
                self.objects[key] = storage
            if tensor.grad_fn is not None:
                self.graph_keys.add(key)
        except Exception:
            return

    def _module(self, module: Any) -> None:
        tensors = itertools.chain(module.parameters(), module.buffers())
        for tensor in itertools.islice(tensors, _MAX_MODULE_TENSORS):
            self._tensor(tensor)
            grad = getattr(tensor, "grad", None)
            if grad is not None:
                self._tensor(grad)


def _tensors_of(tracker: ProbeHost) -> TensorTracker | None:
    return getattr(tracker.device, "tensors", None)


def _step_end_level(tracker: ProbeHost) -> int | None:
    """Bytes in use at the last step end: the level before the next attempt, without a
    second allocator read per step on CUDA (the attempt's input batch is part of it)."""
    level = getattr(tracker.device, "step_end_allocated", None)
    return level if level is not None else _in_use(tracker)


def _in_use(tracker: ProbeHost) -> int | None:
    tensors = _tensors_of(tracker)
    if tensors is not None:
        return int(tensors.live)
    current = getattr(tracker.device, "current_allocated", None)
    if current is None:
        return None
    try:
        return int(current())
    except Exception:
        return None


def _locals(frame: FrameType) -> list[tuple[str, Any]]:
    # read_locals leaves no f_locals snapshot on the frame (3.11/3.12), which would keep
    # the failed attempt's tensors alive into the retry: memwatch causing what it reports.
    return read_locals(frame, _MAX_LOCALS)


def _where(frame: FrameType) -> dict[str, Any]:
    loc = frame_location(frame)
    return {"function": loc.function, "file": loc.file, "line": loc.line}


class OomProbe(Probe):
    name = "oom"

    def __init__(self) -> None:
        self._attempt_open = False
        self._oom_since_step = False
        self._attempt_seq = 0
        self._input_floor = 0  # inputs made before this seq belong to an earlier attempt
        self._attempt_start_bytes: int | None = None
        self._attempt_saved = 0
        self._attempt_inputs: dict[int, int] = {}  # seq -> bytes of the input batch
        self._pending: _Pending | None = None
        self._count = 0

    # -- attempts ---------------------------------------------------------------------------
    def on_step_end(self, tracker: ProbeHost, record: Any, frames: list[FrameType]) -> None:
        self._attempt_open = False
        self._oom_since_step = False

    def on_root_forward_pre(self, tracker: ProbeHost, module: Any, args: Any) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._emit_retry(tracker, pending, sys._getframe(1))
        if not self._attempt_open:
            self._open_attempt(tracker, args)

    def _open_attempt(self, tracker: ProbeHost, args: Any) -> None:
        self._attempt_open = True
        tensors = _tensors_of(tracker)
        self._attempt_start_bytes = (
            _in_use(tracker)
            if tensors is not None or self._oom_since_step
            else _step_end_level(tracker)
        )
        self._attempt_saved = tracker.saved.current
        self._attempt_inputs = {}
        if tensors is None:
            return
        self._attempt_seq = tensors.seq
        floor, self._input_floor = self._input_floor, tensors.seq
        items = args if isinstance(args, (tuple, list)) else (args,)
        for arg in itertools.islice(items, 8):
            if type(arg) is not _Tensor:
                continue
            entry = tensors.entry_for(arg)
            # The batch made for this attempt, not a slice of a dataset made earlier.
            if (
                entry is not None
                and entry.seq > floor
                and arg.numel() * arg.element_size() * 2 >= entry.nbytes
            ):
                self._attempt_inputs[entry.seq] = entry.nbytes

    # -- the OOM ------------------------------------------------------------------------------
    def on_oom(self, tracker: ProbeHost, info: dict[str, Any], frame: FrameType | None) -> None:
        self._count += 1
        self._oom_since_step = True
        index = self._count
        info["oom_index"] = index
        in_use = info.get("in_use_bytes")
        if in_use is None:
            in_use = _in_use(tracker)
            if in_use is not None:
                info["in_use_bytes"] = in_use
        exception = _weak(info.get("exception"))
        detailed = index <= _MAX_DETAILED
        if detailed and frame is not None:
            info["holders"] = self._holders_at_oom(frame)
        previous = self._pending
        if previous is not None and not self._attempt_open:
            # Another OOM before any forward (e.g. while building the smaller batch): the
            # attempt the retry must have released is still the earlier one.
            previous.ooms += 1
            if exception is not None and len(previous.exceptions) < 8:
                previous.exceptions.append(exception)
            info["attempt_bytes"] = previous.attempt_bytes
            info["retry_of"] = previous.index
            return
        pending = self._failed_attempt(tracker, index, in_use, info.get("frame"), frame)
        tensors = _tensors_of(tracker)
        if tensors is not None:
            self._input_floor = tensors.seq  # the retry's batch is made after this
        if exception is not None:
            pending.exceptions.append(exception)
        info["attempt_bytes"] = pending.attempt_bytes
        if pending.pre_attempt_bytes is not None:
            info["pre_attempt_bytes"] = pending.pre_attempt_bytes
        self._pending = pending
        self._attempt_open = False  # the next forward is the retry: a new attempt

    def _failed_attempt(
        self,
        tracker: ProbeHost,
        index: int,
        in_use: int | None,
        raw_frame: FrameType | None,
        frame: FrameType | None,
    ) -> _Pending:
        """What the attempt that just failed allocated, as references that do not keep it."""
        started = self._attempt_open
        pending = _Pending(
            index=index,
            step=tracker.step,
            in_use=in_use,
            attempt_bytes=0,
            pre_attempt_bytes=self._attempt_start_bytes if started else in_use,
            saved_before_attempt=self._attempt_saved if started else tracker.saved.current,
        )
        if frame is not None:
            loc = frame_location(frame)
            pending.location = f"{loc.file}:{loc.line}"
        tensors = _tensors_of(tracker)
        if tensors is not None:
            pending.seqs = frozenset()
            if started:  # an OOM outside any forward has no attempt to release
                alive = tensors.alive_since(self._attempt_seq)
                inputs = tensors.alive_with_seqs(frozenset(self._attempt_inputs))
                # The input batch was made before the forward: its seq is older.
                pending.seqs = frozenset({seq for seq, _ in alive.values()}) | frozenset(
                    self._attempt_inputs
                )
                pending.attempt_bytes = sum(n for _, n in alive.values()) + sum(
                    n for k, n in inputs.items() if k not in alive
                )
        elif index <= _MAX_DETAILED and started:
            pending.refs = self._weak_storages(raw_frame, frame)
            pending.attempt_bytes = sum(nbytes for _, nbytes in pending.refs.values())
        return pending

    def _holders_at_oom(self, frame: FrameType) -> list[dict[str, Any]]:
        """Names in the failing user frames and the bytes they reference (largest first)."""
        holders: list[dict[str, Any]] = []
        seen: set[int] = set()  # one entry per object (recursion repeats ``model``)
        for user in user_frames(frame, limit=4):
            where = _where(user)
            for name, value in _locals(user):
                if id(value) in seen:
                    continue
                seen.add(id(value))
                reach = _Reach()
                reach.add(value)
                if reach.storages:
                    holders.append(
                        {
                            "name": name,
                            **where,
                            "bytes": sum(reach.storages.values()),
                            "graph": bool(reach.graph_keys),
                        }
                    )
        holders.sort(key=lambda h: -h["bytes"])
        return holders[:_MAX_HOLDERS]

    def _weak_storages(
        self, raw_frame: FrameType | None, user: FrameType | None
    ) -> dict[int, tuple[Any, int]]:
        """Without tracking: weakrefs to what the failing frames reference (up to and
        including the first user frame; outer frames hold longer-lived data)."""
        reach = _Reach(keep_objects=True, model_state=False)
        frame = raw_frame
        for _ in range(_MAX_TB_FRAMES):
            if frame is None:
                break
            for _name, value in _locals(frame):
                reach.add(value)
            if frame is user:
                break
            frame = frame.f_back
        refs: dict[int, tuple[Any, int]] = {}
        for key, storage in (reach.objects or {}).items():
            try:
                refs[key] = (weakref.ref(storage), reach.storages[key])
            except TypeError:
                continue
        return refs

    # -- the retry ------------------------------------------------------------------------------
    def _emit_retry(self, tracker: ProbeHost, pending: _Pending, frame: FrameType | None) -> None:
        tensors = _tensors_of(tracker)
        if tensors is not None:
            tensors.release_raised_frames()  # memwatch's own frames must not count as held
        if tensors is not None and pending.seqs is not None:
            alive = tensors.alive_with_seqs(pending.seqs)
            exact = True
        else:
            alive = {}
            for _key, (ref, nbytes) in pending.refs.items():
                storage = ref()
                if storage is not None:
                    alive[storage._cdata] = nbytes
            exact = False
        held = sum(alive.values())
        exceptions = [e for e in (ref() for ref in pending.exceptions) if e is not None]
        handling = sys.exc_info()[1]
        in_except = is_oom_error(handling)
        stack = user_frames(frame, limit=_MAX_FRAMES) if frame is not None else []
        holders: list[dict[str, Any]] = []
        if alive and pending.index <= _MAX_DETAILED:
            holders = self._holders_at_retry(alive, stack, exceptions, handling)
        direct = set()
        for holder in holders:
            direct.update(holder.pop("_keys", ()))
        graph_bytes = held - sum(alive[k] for k in direct if k in alive)
        for holder in holders:
            if holder.get("graph"):
                holder["graph_bytes"] = graph_bytes
        in_use = _in_use(tracker)
        evidence = OomRetry(
            oom_index=pending.index,
            oom_step=pending.step,
            oom_location=pending.location,
            held_bytes=held,
            held_exact=exact,
            attempt_bytes=pending.attempt_bytes,
            pre_attempt_bytes=pending.pre_attempt_bytes,
            in_use_at_oom=pending.in_use,
            in_use_bytes=in_use,
            saved_before_attempt=pending.saved_before_attempt,
            saved_bytes=tracker.saved.current,
            ooms=pending.ooms,
            exception_alive=bool(exceptions),
            in_except_block=in_except,
            unattributed_bytes=max(0, graph_bytes)
            if not any(h.get("graph") for h in holders)
            else 0,
            holders=tuple(holders),
        )
        location = None
        catching = _catching_frame(exceptions[0] if exceptions else handling)
        if catching is not None and any(f is catching for f in stack):
            location = frame_location(catching)  # the line in the except block retrying
        elif stack:
            location = frame_location(stack[0])
        tracker.emit(evidence.event(tracker.step, location))

    def _holders_at_retry(
        self,
        alive: dict[int, int],
        stack: list[FrameType],
        recorded: list[BaseException],
        handling: BaseException | None,
    ) -> list[dict[str, Any]]:
        holders: list[dict[str, Any]] = []
        exceptions: list[BaseException] = []
        for exc in (*recorded, handling):
            if exc is not None and is_oom_error(exc) and all(exc is not e for e in exceptions):
                exceptions.append(exc)
        names: dict[int, str] = {}
        seen: set[int] = set()
        for user in stack:
            where = _where(user)
            for name, value in _locals(user):
                if isinstance(value, BaseException):
                    names.setdefault(id(value), name)
                    continue
                if id(value) in seen:
                    continue
                seen.add(id(value))
                reach = _Reach()
                reach.add(value)
                keys = reach.storages.keys() & alive.keys()
                if keys:
                    holder = {
                        "name": name,
                        "via": "local",
                        **where,
                        "bytes": sum(alive[k] for k in keys),
                        "graph": bool(reach.graph_keys & keys),
                        "_keys": keys,
                    }
                    if isinstance(value, torch.nn.Module):
                        holder["via"] = "grad"  # gradients the failed backward accumulated
                    holders.append(holder)
        on_stack = {id(f) for f in stack}
        for exc in exceptions:
            kept: set[int] = set()
            graph = False
            through: list[dict[str, Any]] = []  # the user's finished frames it keeps
            frames_kept = 0
            tb = exc.__traceback__
            for _ in range(_MAX_TB_FRAMES):
                if tb is None:
                    break
                tb_frame = tb.tb_frame
                tb = tb.tb_next
                if id(tb_frame) in on_stack:
                    continue  # a live frame: its variables are reported as locals
                frames_kept += 1
                in_user_code = is_user_file(tb_frame.f_code.co_filename)
                for var, value in _locals(tb_frame):
                    reach = _Reach()
                    reach.add(value)
                    found = reach.storages.keys() & alive.keys()
                    if not found:
                        continue
                    kept |= found
                    graph = graph or bool(reach.graph_keys & found)
                    if in_user_code:
                        through.append(
                            {
                                **_where(tb_frame),
                                "name": var,
                                "bytes": sum(alive[k] for k in found),
                            }
                        )
            if not kept:
                continue
            catching = _catching_frame(exc)
            name = names.get(id(exc)) or ("sys.exc_info()" if exc is handling else "exception")
            through.sort(key=lambda t: -t["bytes"])
            holders.append(
                {
                    "name": name,
                    "via": "exception",
                    "handling": exc is handling,
                    "caught_in": _where(catching) if catching is not None else None,
                    "bytes": sum(alive[k] for k in kept),
                    "graph": graph,
                    "frames_kept": frames_kept,
                    "through": through[:4],
                    "_keys": kept,
                }
            )
        holders.sort(key=lambda h: (h["via"] != "exception", -h["bytes"]))
        return holders[:_MAX_HOLDERS]


def _weak(value: Any) -> weakref.ref[Any] | None:
    if value is None:
        return None
    try:
        return weakref.ref(value)
    except TypeError:
        return None


def _catching_frame(exception: BaseException | None) -> FrameType | None:
    """The frame whose ``except`` caught ``exception`` (the first traceback entry)."""
    tb = getattr(exception, "__traceback__", None)
    return tb.tb_frame if tb is not None else None
