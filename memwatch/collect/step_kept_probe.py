"""Evidence for ``graph-kept-across-step``: last step's autograd history alive one step on.

Two shapes keep one step's graph or activations alive into the next step (they do not
grow, so ``graph-accumulation`` never sees them; they cost one step at the peak):

* **held**: the program stores a tensor with a ``grad_fn`` where the step's locals do not
  reach — ``self.activity = y`` in a module, ``engine.state.output = (loss, y_pred, y)``,
  ``cache['out'] = out`` on a helper object, a closure's ``nonlocal last`` — so it is alive
  when the next step's forward starts, and with it whatever its graph still saves.
* **retain-graph**: the step's *last* ``backward``/``autograd.grad`` passed
  ``retain_graph=True``, so nothing frees the step's saved activations until the names
  holding the losses are rebound, after the next forward.

How it looks (cheap first, a walk only on a hit):

* every backward notes whether it retained the graph (an attribute write); at the next
  step's first root forward the probe reads the saved-tensor counter's ``stale_bytes``
  (saved in an earlier step, still alive): every step, it costs two reads;
* on sampled steps (the first ``CHECK_FIRST`` training steps, then one in
  ``CHECK_EVERY``: a *when to look* rule — the bug repeats every step, so a sample sees
  it), every root forward with grad keeps weak references to up to ``MAX_OUTPUTS`` of its
  output tensors, and at the next step's first root forward the probe checks which are
  still alive and not a variable of the loop's frames, and which attributes of the root
  modules hold tensors with a ``grad_fn``;
* on a hit worth ``ARM_MIN_BYTES`` (a cost trigger, not a verdict), ``holder_path.py``
  names the holder with a bounded walk from the stack's roots, and the source search finds
  the statement that stores into it. Events are thinned (``EMIT_FIRST``, then one in
  ``EMIT_EVERY``), with the count of steps seen.

Whether the bytes matter (against the step's saved peak) is the detector's decision.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from memwatch.collect.frames import display_path, first_user_frame, is_user_file, user_frames
from memwatch.collect.holder_path import HolderPath, StoreHint, find_paths, roots_from_stack
from memwatch.collect.holders import read_locals, storage_of
from memwatch.collect.loop.common import call_at, location_of, site_of
from memwatch.collect.loop.forwards import graph_tensors
from memwatch.collect.probe import Probe
from memwatch.evidence import GraphKeptAcrossStep
from memwatch.records import Location
from memwatch.source.statements import Statement, find_in_class, find_in_function

if TYPE_CHECKING:
    from types import FrameType

    from memwatch.collect.loop.common import Site
    from memwatch.collect.probe import BackwardCall, ProbeHost
    from memwatch.records import StepRecord

#: Name holders only when the kept tensors (or the retained saved bytes) reach this much:
#: a cost trigger (the walk is bounded but not free), the detector has its own thresholds.
ARM_MIN_BYTES = 64 * 1024
MAX_OUTPUTS = 8
MAX_MODULES = 512
CHECK_FIRST = 6
CHECK_EVERY = 16
EMIT_FIRST = 3
EMIT_EVERY = 32

_BOUNDARIES = ("optimizer", "manual", "scaler")


@dataclass(slots=True)
class _Armed:
    step: int
    saved_peak: int
    outputs: list[Any]  # weakrefs to last step's root-forward outputs
    modules: list[Any]  # weakrefs to last step's root modules
    retained: tuple[Site | None, bool] | None  # the last backward's site, is_grad


@dataclass(slots=True)
class _Seen:
    hits: int = 0
    last: tuple[GraphKeptAcrossStep, Location | None] | None = None
    emitted_at: int = 0


@dataclass(slots=True)
class _StepState:
    outputs: list[Any] = field(default_factory=list)
    modules: dict[int, Any] = field(default_factory=dict)
    retained: tuple[Site | None, bool] | None = None


class StepKeptProbe(Probe):
    name = "graph-kept-across-step"

    def __init__(self) -> None:
        self._step = _StepState()
        self._armed: _Armed | None = None
        self._training_steps = 0
        self._collect = True  # the first training step is checked
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._where: dict[tuple[str, str], Location | None] = {}

    # -- during a step (cheap) ------------------------------------------------------------
    def on_root_forward_post(
        self, tracker: ProbeHost, module: Any, output: Any, saved_delta: int | None
    ) -> None:
        state = self._step
        if (
            not self._collect
            or saved_delta is None  # not counted: this probe judges counted steps only
            or saved_delta <= 0
            or len(state.outputs) >= MAX_OUTPUTS
        ):
            return
        for tensor in graph_tensors(output):
            if len(state.outputs) >= MAX_OUTPUTS:
                break
            try:
                state.outputs.append(weakref.ref(tensor))
            except TypeError:
                continue
        if len(state.modules) < 4 and id(module) not in state.modules:
            try:
                state.modules[id(module)] = weakref.ref(module)
            except TypeError:
                pass

    def on_backward(self, tracker: ProbeHost, call: BackwardCall) -> None:
        if call.retain_graph:
            self._step.retained = (site_of(first_user_frame(call.frame)), call.is_grad)
        else:
            self._step.retained = None

    def on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        state, self._step = self._step, _StepState()
        training = record.boundary in _BOUNDARIES or (
            record.boundary not in ("forward", "end") and record.backward_calls > 0
        )
        if not training:
            self._armed = None
            return
        checked = self._collect
        self._training_steps += 1
        upcoming = self._training_steps + 1
        self._collect = upcoming <= CHECK_FIRST or upcoming % CHECK_EVERY == 0
        if not checked and state.retained is None:
            self._armed = None
            return
        self._armed = _Armed(
            record.step,
            record.saved_peak_bytes or 0,  # 0: not counted on this step (sampling)
            state.outputs,
            list(state.modules.values()) if checked else [],
            state.retained,
        )

    # -- at the next step's first forward -------------------------------------------------
    def on_root_forward_pre(self, tracker: ProbeHost, module: Any, args: Any) -> None:
        armed = self._armed
        if armed is None:
            return
        self._armed = None
        stale = tracker.saved.stale_bytes
        if armed.retained is not None and stale >= ARM_MIN_BYTES:
            self._retained(tracker, armed, stale)
        candidates = [t for t in (ref() for ref in armed.outputs) if t is not None]
        if candidates:
            candidates = _not_loop_locals(candidates, sys._getframe(1))
        if armed.modules:
            candidates.extend(_module_attribute_tensors(armed.modules, candidates))
        if not candidates:
            return
        storages: set[int] = set()
        total = 0
        for tensor in candidates:
            key, nbytes = storage_of(tensor)
            if key not in storages:
                storages.add(key)
                total += nbytes
        if total < ARM_MIN_BYTES:
            return
        self._held(tracker, armed, candidates, stale)

    def _held(self, tracker: ProbeHost, armed: _Armed, tensors: list[Any], stale: int) -> None:
        seen = self._seen.setdefault(("held", ""), _Seen())
        seen.hits += 1
        if seen.hits > EMIT_FIRST and seen.hits % EMIT_EVERY:
            return
        roots = roots_from_stack(sys._getframe(2))
        try:
            paths = find_paths(tensors, roots)
        finally:
            roots.clear()
        groups: dict[str, tuple[HolderPath, list[Any]]] = {}
        for tensor in tensors:
            holder = paths.get(id(tensor))
            if holder is None or holder.scoping:
                continue  # unnamed (never misnamed), or the loop's own variable
            groups.setdefault(_owner_path(holder.path), (holder, []))[1].append(tensor)
        for _, (holder, kept) in groups.items():
            storages: set[int] = set()
            total = 0
            for tensor in kept:
                key, nbytes = storage_of(tensor)
                if key not in storages:
                    storages.add(key)
                    total += nbytes
            if total < ARM_MIN_BYTES:
                continue
            evidence = GraphKeptAcrossStep(
                cause="held",
                holder=_owner_path(holder.path),
                holder_kind=holder.kind,
                tensors=len(kept),
                tensor_bytes=total,
                stale_saved_bytes=stale,
                saved_peak_bytes=armed.saved_peak,
                grad_fn=_grad_fn_name(kept[0]),
                tensors_from_step=armed.step,
                occurrences=seen.hits,
            )
            location = self._store_location(holder)
            self._emit(tracker, ("held", evidence.holder or ""), evidence, location, seen.hits)

    def _retained(self, tracker: ProbeHost, armed: _Armed, stale: int) -> None:
        assert armed.retained is not None
        site, is_grad = armed.retained
        key = ("retain-graph", str(site[2]) if site is not None else "")
        seen = self._seen.setdefault(key, _Seen())
        seen.hits += 1
        if seen.hits > EMIT_FIRST and seen.hits % EMIT_EVERY:
            return
        call = call_at(site, "grad" if is_grad else "backward")
        variable = None
        if call is not None:
            variable = call.receiver if call.method == "backward" else call.first_arg
        evidence = GraphKeptAcrossStep(
            cause="retain-graph",
            holder=variable,
            holder_kind="local",
            stale_saved_bytes=stale,
            saved_peak_bytes=armed.saved_peak,
            grad_fn="autograd.grad" if is_grad else "backward",
            tensors_from_step=armed.step,
            occurrences=seen.hits,
        )
        self._emit(tracker, key, evidence, location_of(site), seen.hits)

    def _emit(
        self,
        tracker: ProbeHost,
        key: tuple[str, str],
        evidence: GraphKeptAcrossStep,
        location: Location | None,
        hits: int,
    ) -> None:
        seen = self._seen.setdefault(key, _Seen())
        seen.last = (evidence, location)
        seen.emitted_at = hits
        tracker.emit(evidence.event(tracker.step, location))

    def on_stop(self, tracker: ProbeHost) -> None:
        """Emit the final counts, so the report says in how many steps it happened."""
        self._armed = None
        held_hits = self._seen.get(("held", ""), _Seen()).hits
        for key, seen in self._seen.items():
            if seen.last is None:
                continue
            hits = held_hits if key[0] == "held" else seen.hits
            if hits == seen.emitted_at:
                continue
            evidence, location = seen.last
            seen.emitted_at = hits
            tracker.emit(
                dataclasses.replace(evidence, occurrences=hits).event(tracker.step, location)
            )

    # -- naming the line ------------------------------------------------------------------
    def _store_location(self, holder: HolderPath) -> Location | None:
        key = (holder.path, holder.kind)
        if key not in self._where:
            self._where[key] = _find_store(holder.hints)
        return self._where[key]


def _not_loop_locals(tensors: list[Any], start: FrameType) -> list[Any]:
    """The tensors that no variable of the nearest user frames holds directly.

    Closure variables (free and cell variables) do not count as the frame's own: a
    ``nonlocal last`` outlives the step, the holder walk decides."""
    direct: set[int] = set()
    frames = user_frames(start, limit=4)
    try:
        for frame in frames:
            code = frame.f_code
            shared = set(code.co_freevars) | set(code.co_cellvars)
            for name, value in read_locals(frame):
                if name not in shared:
                    direct.add(id(value))
    finally:
        del frames
    return [t for t in tensors if id(t) not in direct]


def _module_attribute_tensors(modules: list[Any], already: list[Any]) -> list[Any]:
    """Tensors with a ``grad_fn`` kept as plain attributes of the root modules' submodules
    (``self.activity = y``), one container level deep. A tensor shaped like one of its
    module's parameters is skipped: old-style weight/spectral norm recompute ``weight``
    from the parameters in a pre-hook and keep it as an attribute by design."""
    seen = {id(t) for t in already}
    found: list[Any] = []
    count = 0
    for ref in modules:
        root = ref()
        if root is None:
            continue
        for submodule in root.modules():
            count += 1
            if count > MAX_MODULES:
                return found
            try:
                attributes = list(vars(submodule).items())
            except TypeError:
                continue
            shapes: set[tuple[int, ...]] | None = None
            for name, value in attributes:
                if name.startswith("_") and name in ("_parameters", "_buffers", "_modules"):
                    continue
                values: list[Any]
                if isinstance(value, torch.Tensor):
                    values = [value]
                elif isinstance(value, (list, tuple)):
                    values = [v for v in value[:8] if isinstance(v, torch.Tensor)]
                elif isinstance(value, dict) and not name.endswith("hooks"):
                    values = [v for v in list(value.values())[:8] if isinstance(v, torch.Tensor)]
                else:
                    continue
                for tensor in values:
                    if tensor.is_leaf or id(tensor) in seen or isinstance(tensor, nn.Parameter):
                        continue
                    if shapes is None:
                        shapes = {tuple(p.shape) for p in submodule.parameters(recurse=False)}
                    if tuple(tensor.shape) in shapes:
                        continue
                    seen.add(id(tensor))
                    found.append(tensor)
    return found


def _owner_path(path: str) -> str:
    """``engine.state.output[1]`` -> ``engine.state.output``: the holder, not the element."""
    index = len(path)
    while path.endswith("]", 0, index):
        opening = path.rfind("[", 0, index)
        if opening <= 0:
            break
        index = opening
    return path[:index]


def _grad_fn_name(tensor: Any) -> str | None:
    try:
        fn = tensor.grad_fn
        return type(fn).__name__ if fn is not None else None
    except Exception:
        return None


def _find_store(hints: tuple[StoreHint, ...]) -> Location | None:
    """The user's statement that stores into the holder; None rather than a guess (a
    library class, or a store written from outside the owner's methods)."""
    for hint in hints:
        if not is_user_file(hint.file):
            continue
        statement: Statement | None = None
        try:
            if hint.scope == "class":
                statement = find_in_class(hint.file, hint.name, hint.target)
                if statement is not None and _stores_a_constant(statement):
                    statement = _non_constant_store(hint)
            elif hint.scope == "function":
                statement = find_in_function(hint.file, hint.first_line, hint.name, hint.target)
        except Exception:
            statement = None
        if (
            statement is not None
            and statement.pattern != "method-call"
            and not _stores_a_constant(statement)
        ):
            return Location(display_path(statement.file), statement.line, statement.function)
    return None


def _stores_a_constant(statement: Statement) -> bool:
    """``self.output = None`` in ``__init__`` declares the holder; it does not fill it."""
    if statement.pattern != "assign" or not statement.operands:
        return False
    try:
        ast.literal_eval(statement.operands[0])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _non_constant_store(hint: StoreHint) -> Statement | None:
    """``find_in_class`` prefers one statement per class; look method by method instead."""
    from memwatch.source.files import parse_file

    parsed = parse_file(hint.file)
    if parsed is None:
        return None
    for node in ast.walk(parsed.tree):
        if not isinstance(node, ast.ClassDef) or node.name != hint.name:
            continue
        for method in node.body:
            if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            statement = find_in_function(hint.file, method.lineno, method.name, hint.target)
            if (
                statement is not None
                and statement.pattern != "method-call"
                and not _stores_a_constant(statement)
            ):
                return statement
    return None
