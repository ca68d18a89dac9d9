"""The census: what survives the step, whoever holds it.

The every-step holder scan (``holders.py``) looks where training loops usually keep
tensors: the user frames' variables, one level of attributes, module attributes and flat
containers. Real code keeps them anywhere: ``epoch_loss['d_loss']`` (a dict value),
``model[2].tensor_s._tensor`` (a helper object inside a module), a LightningModule's
``self.training_step_outputs`` reachable only from the framework's frames, a
``memoize`` decorator's ``cache`` dict in a closure cell, the cache of a
``functools.cache``-decorated method, ``history`` (a list of dicts of state dicts),
``logs['z']`` (a defaultdict of lists), a Dataset's ``self._memo`` dict of numpy arrays.

The census walks the object graph from all of the program's roots, breadth first so the
path it names is the shortest one a person would write:

1. frame variables up the whole stack: the user's frames first, then the frameworks'
   (Lightning, transformers and accelerate loops hold the model and trainer there);
2. the globals of every user module (``sys.modules`` entries whose file is the user's);
3. from there: attributes of objects at any depth, ``nn.Module`` children, non-standard
   attributes and buffers (never parameters), containers inside containers, closure
   cells and default arguments of user functions (decorators' closures), the cache dict
   of ``functools.lru_cache``/``cache`` wrappers (reached with ``gc.get_referents``),
   class attributes of user classes, and optimizer state.

Every tensor, numpy array or container of them it meets becomes a *holder*, named the
way a person writes it (a container is one holder with everything below it; a dict of
containers is named per key, ``logs['z']``; small dicts and lists of tensors with a graph
are also named per item, ``epoch_loss['total']``). Holders are remembered as *paths*
from a weakly held anchor (the nearest object that takes a weak reference, or a frame
variable: code object and name), never as references to what they hold, so the census
keeps nothing alive. ``CensusWatch.entries`` re-resolves and measures the remembered
paths at every holder scan (cheap: a few attribute and item lookups per holder, bounded
subtree measurements), and hands them to the graph and growth checkers as ``Entry``s, so
a holder the census found once is followed at every scanned step with the checks'
latency.

Work is bounded: ``NODE_BUDGET`` objects per census (a visited set by ``id``),
``HOLDER_BUDGET`` objects per holder measurement, big containers sampled (head and tail)
and extrapolated, storages counted once per holder. When the census runs is the holders
probe's decision (``holders_probe.py``: the first steps, a cheap signal at a step end,
and a sample every ``SAMPLE_EVERY`` steps); its measured cost is in
docs/measurements.md ("The census").
"""

from __future__ import annotations

import functools
import gc
import itertools
import sys
import time
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType, FunctionType, MethodType, ModuleType
from typing import Any

import torch
from torch import nn

from memwatch.collect.frames import is_user_file
from memwatch.collect.holders import (
    _CONFIG_TYPES,
    _STDLIB,
    CO_OPTIMIZED,
    Entry,
    FrameInfo,
    Scan,
    first_tensor,
    read_locals,
    storage_of,
)
from memwatch.source.statements import Statement

#: Objects one census visits at most (measured cost: docs/measurements.md).
NODE_BUDGET = 20_000
#: Objects one holder's measurement visits at most.
HOLDER_BUDGET = 2_048
MAX_DEPTH = 10
MAX_ATTRIBUTES = 64
#: Holders followed at each scan; the largest (and those with a graph) are kept.
MAX_WATCH = 64
#: Containers longer than this are measured on a sample and extrapolated.
EXACT_ELEMENTS = 64
SAMPLE_HEAD = 8
SAMPLE_TAIL = 24
#: A dict of containers with at most this many str/int keys is named per key.
EXPAND_KEYS = 32
#: Small dicts/lists of tensors: their tensors with a graph are also followed per item.
ITEM_GRAD_KEYS = 16
#: A lone tensor is a holder worth following from this size (or with a graph).
MIN_TENSOR_HOLDER = 64 * 1024
#: A holder that no longer resolves this many scans in a row is forgotten.
MISSES_TO_DROP = 3
MEASURE_DEPTH = 6
#: A container whose identity, length and last item did not change is re-measured only
#: every this many scans (its items may still be replaced or grow in place).
REMEASURE_EVERY = 64

_SKIP, _TENSOR, _PARAM, _ARRAY, _SEQ, _DICT, _SET = range(7)
_MODULE, _OPTIM, _FUNC, _LRU, _CLASS, _OBJECT, _WRAPPED = range(7, 14)
_SCALARS = (int, float, complex, bool, str, bytes, bytearray, type(None), range, slice)
_LRU_TYPE = type(functools.lru_cache(maxsize=None)(lambda: None))
_TORCH_ALLOW = ("torch.utils.data",)
_SIMPLE_KEYS = (str, int)
_STANDARD_MODULE_KEYS = frozenset(vars(nn.Module()).keys())


# -- classification --------------------------------------------------------------------------
_kinds: dict[type, int] = {}


def _kind(tp: type) -> int:
    kind = _kinds.get(tp)
    if kind is None:
        kind = _classify(tp)
        if len(_kinds) < 8192:
            _kinds[tp] = kind
    return kind


def _classify(tp: type) -> int:
    try:
        if issubclass(tp, torch.Tensor):
            return _PARAM if issubclass(tp, nn.Parameter) else _TENSOR
        if tp.__name__ == "ndarray" and tp.__module__ == "numpy":
            return _ARRAY
        if issubclass(tp, (list, tuple, deque)):
            return _SEQ
        if issubclass(tp, dict):
            return _DICT
        if issubclass(tp, (set, frozenset)):
            return _SET
        if issubclass(tp, nn.Module):
            return _MODULE
        if issubclass(tp, torch.optim.Optimizer):
            return _OPTIM
        if issubclass(tp, _SCALARS):
            return _SKIP
        if tp is FunctionType:
            return _FUNC
        if tp is _LRU_TYPE:
            return _LRU
        if issubclass(tp, (staticmethod, classmethod)):
            return _WRAPPED
        if issubclass(tp, type):
            return _CLASS
        if issubclass(tp, (MethodType, ModuleType, FrameType, weakref.ref)):
            return _SKIP
        module = getattr(tp, "__module__", "") or ""
        top = module.split(".", 1)[0]
        if (
            top in _STDLIB
            or top == "memwatch"
            or (top == "torch" and not module.startswith(_TORCH_ALLOW))
            or top in ("numpy", "pandas", "_pytest", "pytest", "pluggy")
        ):
            return _SKIP  # memwatch's own objects hold copies of what it measures
        if getattr(tp, "__dictoffset__", 0) == 0:
            return _SKIP  # __slots__ objects, C types
        return _OBJECT
    except Exception:
        return _SKIP


def _user_type(tp: type) -> bool:
    module = sys.modules.get(getattr(tp, "__module__", "") or "")
    filename = getattr(module, "__file__", None) if module is not None else None
    return bool(filename) and is_user_file(str(filename))


def _framework_type(tp: type) -> bool:
    """A class of an installed package other than torch (Lightning's Trainer, ...)."""
    top = (getattr(tp, "__module__", "") or "").split(".", 1)[0]
    return top != "torch" and not _user_type(tp)


def _array_key(array: Any) -> tuple[int, int]:
    base = array
    while getattr(base, "base", None) is not None and _kind(type(base.base)) == _ARRAY:
        base = base.base
    try:
        return id(base), int(base.nbytes)
    except Exception:
        return id(base), 0


# -- paths ---------------------------------------------------------------------------------
Step = tuple[str, Any]


@dataclass(slots=True)
class HolderPath:
    """How to reach a holder again, without holding it (see the module docstring)."""

    name: str
    anchor: Any  # weakref.ref to an object, or None for a frame variable
    code: Any  # frame variable: the frame's code object
    local: str | None  # frame variable: its name
    steps: tuple[Step, ...]
    scope: str  # local | global | attribute | module | closure
    site: FrameInfo
    owner_type: type | None = None
    attr: str | None = None
    target: str | None = None
    key: object = None
    statement: Statement | None = None
    misses: int = 0
    bytes: int = 0
    grad: bool = False
    user: bool = True  # reached through the user's objects, not only a framework's
    far: bool = False  # reached only from a user module no frame of the stack runs
    # the last measurement and what it was of (id, length, id of the last item)
    shape: tuple[int, int, int] | None = None
    size: _Size | None = None
    scans: int = 0


def _resolve_step(obj: Any, step: Step) -> Any:
    op, arg = step
    if op == "a":
        return vars(obj)[arg]
    if op == "m":
        return obj._modules[arg]
    if op == "b":
        return obj._buffers[arg]
    if op == "i":
        if isinstance(obj, dict):
            # ``dict.get``, never ``obj[key]``: a defaultdict would grow the missing key
            value = dict.get(obj, arg, _MISSING)
            if value is _MISSING:
                raise KeyError(arg)
            return value
        return obj[arg]
    if op == "c":
        return obj.__closure__[arg].cell_contents
    if op == "d":
        return obj.__defaults__[arg]
    if op == "f":
        return obj.__func__
    if op == "w":
        return obj.__wrapped__
    if op == "s":
        return obj.state
    if op == "l":
        return _lru_dict(obj)
    raise KeyError(op)


def _lru_dict(wrapper: Any) -> Any:
    """The cache dict of a ``functools.lru_cache`` wrapper (a C object: its referents)."""
    for referent in gc.get_referents(wrapper):
        if type(referent) is dict:
            return referent
    raise KeyError("lru cache")


# -- measuring -----------------------------------------------------------------------------
@dataclass(slots=True)
class _Size:
    tensor_bytes: int = 0
    host_tensor_bytes: int = 0
    array_bytes: int = 0
    tensors: int = 0
    items: int = 0


class _Measure:
    """Bytes below one holder: storages and arrays counted once, ``HOLDER_BUDGET`` nodes."""

    __slots__ = ("budget", "nodes", "objects", "storages")

    def __init__(self, budget: int = HOLDER_BUDGET) -> None:
        self.nodes = 0
        self.objects: set[int] = set()
        self.storages: set[int] = set()
        self.budget = budget

    def size(self, value: Any, depth: int = 0) -> _Size:
        out = _Size()
        self._add(value, depth, 1.0, out)
        return out

    def _add(self, value: Any, depth: int, scale: float, out: _Size) -> None:
        self.nodes += 1
        if self.nodes > self.budget or depth > MEASURE_DEPTH:
            return
        kind = _kind(type(value))
        if kind == _TENSOR:
            key, nbytes = storage_of(value)
            out.tensors += max(1, int(scale))
            if key in self.storages:
                return
            self.storages.add(key)
            out.tensor_bytes += int(nbytes * scale)
            try:
                if value.device.type == "cpu":
                    out.host_tensor_bytes += int(nbytes * scale)
            except Exception:
                pass
            return
        if kind == _ARRAY:
            key, nbytes = _array_key(value)
            if key in self.storages:
                return
            self.storages.add(key)
            out.array_bytes += int(nbytes * scale)
            return
        if kind in (_SKIP, _PARAM, _MODULE, _OPTIM, _FUNC, _LRU, _CLASS, _WRAPPED):
            return
        oid = id(value)
        if oid in self.objects:
            return
        self.objects.add(oid)
        if kind == _OBJECT:
            try:
                attrs = list(itertools.islice(vars(value).values(), MAX_ATTRIBUTES))
            except Exception:
                return
            for item in attrs:
                self._add(item, depth + 1, scale, out)
            return
        # containers
        try:
            length = len(value)
        except Exception:
            return
        out.items += int(length * scale)
        if length == 0:
            return
        try:
            sample, factor = _sample(value, kind, length)
        except Exception:
            return
        for item in sample:
            self._add(item, depth + 1, scale * factor, out)


def _sample(value: Any, kind: int, length: int) -> tuple[list[Any], float]:
    """Items to measure (keys and values for dicts) and the factor they stand for."""
    if kind == _DICT:
        if length <= EXACT_ELEMENTS:
            items = list(value.items())
        else:
            items = list(itertools.islice(iter(value.items()), SAMPLE_HEAD))
            items.extend(itertools.islice(reversed(value.items()), SAMPLE_TAIL))
        flat: list[Any] = []
        for k, v in items:
            if not isinstance(k, _SIMPLE_KEYS):
                flat.append(k)  # keys can hold tensors too (memoize keyed by arguments)
            flat.append(v)
        return flat, length / max(len(items), 1)
    if kind == _SET:
        items = list(itertools.islice(iter(value), EXACT_ELEMENTS))
        return items, length / max(len(items), 1)
    if length <= EXACT_ELEMENTS:
        return list(value), 1.0
    if isinstance(value, deque):
        head = list(itertools.islice(iter(value), SAMPLE_HEAD))
        tail = list(itertools.islice(reversed(value), SAMPLE_TAIL))
    else:
        head = [value[i] for i in range(SAMPLE_HEAD)]
        tail = [value[i] for i in range(length - 1, length - 1 - SAMPLE_TAIL, -1)]
    return head + tail, length / (SAMPLE_HEAD + SAMPLE_TAIL)


# -- the census ----------------------------------------------------------------------------
@dataclass(slots=True)
class _Node:
    value: Any
    name: str
    anchor: Any
    code: Any
    local: str | None
    steps: tuple[Step, ...]
    depth: int
    site: FrameInfo
    scope: str
    target: str | None
    key: object
    owner_type: type | None
    attr: str | None
    framework: bool  # the path went through an object of a framework's class
    far: bool = False  # reached only from a user module no frame of the stack runs


@dataclass(slots=True)
class CensusResult:
    """One census: the holders it found and what they hold in total."""

    holders: list[HolderPath] = field(default_factory=list)
    tensor_bytes: int = 0
    host_tensor_bytes: int = 0
    array_bytes: int = 0
    container_items: int = 0
    nodes: int = 0
    capped: bool = False
    cost_s: float = 0.0


def _frame_info(frame: FrameType) -> FrameInfo:
    code = frame.f_code
    return FrameInfo(
        code,
        code.co_filename,
        code.co_firstlineno,
        code.co_name,
        frame.f_lineno,
        not (code.co_flags & CO_OPTIMIZED),
    )


def _module_site(module: ModuleType) -> FrameInfo:
    filename = str(getattr(module, "__file__", "") or "")
    return FrameInfo(f"module:{filename}", filename, 1, "<module>", 1, True)


def _function_site(fn: Any) -> FrameInfo:
    code = fn.__code__
    return FrameInfo(
        code, code.co_filename, code.co_firstlineno, code.co_name, code.co_firstlineno, False
    )


def _decorator_statement(fn: Any) -> Statement | None:
    """Where a cached function is decorated (``@functools.cache``): its first line."""
    try:
        code = fn.__code__
        import linecache

        text = linecache.getline(code.co_filename, code.co_firstlineno).strip()
        return Statement(
            code.co_filename, code.co_firstlineno, code.co_name, text[:160], "store", ()
        )
    except Exception:
        return None


def _stack(start: FrameType | None) -> tuple[list[FrameType], list[FrameType]]:
    """(user frames, framework frames) from ``start`` outwards, innermost first."""
    user: list[FrameType] = []
    framework: list[FrameType] = []
    frame = start
    while frame is not None:
        filename = frame.f_code.co_filename
        if is_user_file(filename):
            user.append(frame)
        else:
            top = (frame.f_globals.get("__name__") or "").split(".", 1)[0]
            if top not in _STDLIB and top not in ("memwatch", "torch", "_pytest", "pluggy"):
                framework.append(frame)
        frame = frame.f_back
    return user, framework


_user_modules: tuple[int, list[ModuleType]] = (-1, [])


def user_modules() -> list[ModuleType]:
    """Modules whose file is the user's code (not memwatch, site-packages or stdlib).

    Recomputed only when ``sys.modules`` changed size (a framework imports thousands of
    modules: looking at each costs milliseconds)."""
    global _user_modules
    count = len(sys.modules)
    if _user_modules[0] == count:
        return _user_modules[1]
    found = []
    for module in list(sys.modules.values()):
        filename = getattr(module, "__file__", None)
        if (
            isinstance(filename, str)
            and is_user_file(filename)
            and module.__name__.split(".", 1)[0] != "memwatch"
        ):
            found.append(module)
    _user_modules = (count, found)
    return found


def _display(parent: str, step: Step, owner_is_module: bool = False) -> str:
    op, arg = step
    if op in ("a", "b"):
        return f"{parent}.{arg}" if parent else str(arg)
    if op == "m":
        return f"{parent}[{arg}]" if str(arg).isdigit() else f"{parent}.{arg}"
    if op == "i":
        return f"{parent}[{arg!r}]"
    if op == "s":
        return f"{parent}.state"
    return parent


def _rank(holder: HolderPath) -> tuple[bool, bool, bool, int]:
    """Which holders are kept when there are more than ``MAX_WATCH``: a graph first, then
    what the running program reaches (its frames and their modules) before what only
    another user module holds, the user's objects before a framework's, bigger first.
    Without the second key a program importing many user modules (a test suite, a
    project's utilities) could crowd out the running loop's own empty list, the one that
    grows later (``self.validation_step_outputs`` in a Lightning module)."""
    return (not holder.grad, holder.far, not holder.user, -holder.bytes)


class Census:
    """Finds holders from the program's roots; remembers them as paths (``CensusWatch``)."""

    def __init__(self) -> None:
        self._module_keys: dict[int, tuple[int, tuple[str, ...]]] = {}

    def run(self, start: FrameType | None, node_budget: int = NODE_BUDGET) -> CensusResult:
        began = time.perf_counter()
        result = CensusResult()
        queue: deque[_Node] = deque()
        user, framework = _stack(start)
        for frame in user:
            self._frame_roots(queue, frame, framework=False)
        namespaces: set[int] = set()
        running = {id(frame.f_globals) for frame in user}
        for module in user_modules():
            namespaces.add(id(module.__dict__))
            self._module_roots(queue, module, far=id(module.__dict__) not in running)
        # The modules of the user's frames, whatever the cache above says (a script run
        # with runpy replaces ``sys.modules['__main__']`` without changing its size).
        for frame in user:
            if id(frame.f_globals) in namespaces:
                continue
            namespaces.add(id(frame.f_globals))
            owner = sys.modules.get(str(frame.f_globals.get("__name__", "")))
            if owner is not None and getattr(owner, "__dict__", None) is frame.f_globals:
                self._module_roots(queue, owner)
        for frame in framework:
            self._frame_roots(queue, frame, framework=True)
        seen: set[int] = set()
        storages: set[int] = set()
        candidates: list[HolderPath] = []
        nodes = 0
        while queue:
            node = queue.popleft()
            nodes += 1
            if nodes > node_budget:
                result.capped = True
                break
            try:
                self._visit(node, queue, seen, storages, candidates, result)
            except Exception:  # a container changed size under us (another thread)
                continue
        result.nodes = nodes
        candidates.sort(key=_rank)
        result.holders = candidates[: MAX_WATCH * 2]
        result.cost_s = time.perf_counter() - began
        return result

    # -- roots --
    def _frame_roots(self, queue: deque[_Node], frame: FrameType, framework: bool) -> None:
        code = frame.f_code
        if not (code.co_flags & CO_OPTIMIZED):
            return  # module frames: their globals are user-module roots
        site = _frame_info(frame)
        for name, value in read_locals(frame):
            if _kind(type(value)) == _SKIP:
                continue
            queue.append(
                _Node(
                    value,
                    name,
                    None,
                    code,
                    name,
                    (),
                    0,
                    site,
                    "local",
                    name,
                    None,
                    None,
                    None,
                    framework,
                )
            )

    def _module_roots(self, queue: deque[_Node], module: ModuleType, far: bool = False) -> None:
        try:
            anchor = weakref.ref(module)
            items = list(itertools.islice(vars(module).items(), 4096))
        except Exception:
            return
        site = _module_site(module)
        for name, value in items:
            if name[:2] == "__" or _kind(type(value)) == _SKIP:
                continue
            if isinstance(value, type) and getattr(value, "__module__", None) != module.__name__:
                continue  # imported classes are walked from their own module
            queue.append(
                _Node(
                    value,
                    name,
                    anchor,
                    None,
                    None,
                    (("a", name),),
                    0,
                    site,
                    "global",
                    name,
                    None,
                    None,
                    None,
                    False,
                    far,
                )
            )

    # -- one object --
    def _visit(
        self,
        node: _Node,
        queue: deque[_Node],
        seen: set[int],
        storages: set[int],
        candidates: list[HolderPath],
        result: CensusResult,
    ) -> None:
        value = node.value
        kind = _kind(type(value))
        if kind in (_SKIP, _PARAM):
            return
        oid = id(value)
        if oid in seen:
            return
        seen.add(oid)
        if kind == _TENSOR:
            key, nbytes = storage_of(value)
            if key not in storages:
                storages.add(key)
                result.tensor_bytes += nbytes
                if value.device.type == "cpu":
                    result.host_tensor_bytes += nbytes
            grad = value.grad_fn is not None
            if grad or nbytes >= MIN_TENSOR_HOLDER:
                candidates.append(self._holder(node, nbytes, grad))
            return
        if kind == _ARRAY:
            key, nbytes = _array_key(value)
            if key not in storages:
                storages.add(key)
                result.array_bytes += nbytes
            if nbytes >= MIN_TENSOR_HOLDER:
                candidates.append(self._holder(node, nbytes, False))
            return
        if node.depth >= MAX_DEPTH:
            return
        if node.framework and kind in (_OBJECT, _MODULE) and _user_type(type(value)):
            # The user's object reached through a framework's (``trainer.strategy.
            # _lightning_module``): named from the object itself, as its class says it.
            node.name = "self"
            node.framework = False
            node.owner_type = type(value)
        if kind in (_SEQ, _DICT, _SET):
            self._container(node, kind, queue, candidates, result)
        elif kind == _MODULE:
            self._module(node, queue)
        elif kind == _OPTIM:
            return  # its state is measured by the holder scan (and stale-optimizer-params)
        elif kind == _FUNC:
            self._function(node, queue)
        elif kind == _LRU:
            wrapped = getattr(value, "__wrapped__", None)
            code = getattr(wrapped, "__code__", None)
            if code is None or not is_user_file(code.co_filename):
                return
            try:
                cache = _lru_dict(value)
            except KeyError:
                return
            child = self._child(node, cache, ("l", None), None)
            child.name = f"{node.name} (functools cache)"
            child.scope = "closure"
            child.site = _function_site(wrapped)
            child.target = None
            holder_bytes = _Measure().size(cache)
            total = holder_bytes.tensor_bytes + holder_bytes.array_bytes
            if total or cache:
                holder = self._holder(child, total, False)
                holder.statement = _decorator_statement(wrapped)
                candidates.append(holder)
        elif kind == _WRAPPED:
            func = getattr(value, "__func__", None)
            if func is not None:
                queue.append(self._child(node, func, ("f", None), None))
        elif kind == _CLASS:
            if not _user_type(value):
                return
            try:
                items = list(itertools.islice(vars(value).items(), MAX_ATTRIBUTES * 2))
            except Exception:
                return
            for name, item in items:
                if name[:2] == "__" or _kind(type(item)) == _SKIP:
                    continue
                child = self._child(node, item, ("a", name), name)
                child.scope = "global"
                queue.append(child)
        elif kind == _OBJECT:
            self._object(node, queue)

    def _child(self, node: _Node, value: Any, step: Step, attr: str | None) -> _Node:
        """The node one step below ``node`` (anchor moved to ``node`` if it can be)."""
        anchor, code, local, steps = node.anchor, node.code, node.local, (*node.steps, step)
        parent = node.value
        if _kind(type(parent)) in (_OBJECT, _MODULE, _FUNC, _LRU, _CLASS, _OPTIM):
            try:
                anchor, code, local, steps = weakref.ref(parent), None, None, (step,)
            except TypeError:
                pass
        name = _display(node.name, step)
        return _Node(
            value,
            name,
            anchor,
            code,
            local,
            steps,
            node.depth + 1,
            node.site,
            node.scope,
            node.target,
            node.key,
            node.owner_type,
            node.attr,
            node.framework,
            node.far,
        )

    def _holder(self, node: _Node, nbytes: int, grad: bool) -> HolderPath:
        return HolderPath(
            name=node.name,
            anchor=node.anchor,
            code=node.code,
            local=node.local,
            steps=node.steps,
            scope=node.scope,
            site=node.site,
            owner_type=node.owner_type,
            attr=node.attr,
            target=node.target,
            key=node.key,
            bytes=nbytes,
            grad=grad,
            user=not node.framework,
            far=node.far,
        )

    def _attribute(self, node: _Node, value: Any, step: Step, attr: str, owner: Any) -> _Node:
        """A node for ``owner.attr``: named ``self.attr`` when reached through a framework."""
        child = self._child(node, value, step, attr)
        owner_type = type(owner)
        child.framework = node.framework or _framework_type(owner_type)
        child.owner_type = owner_type
        child.attr = attr
        child.key = None
        if node.scope in ("local", "global", "closure") and node.depth == 0 and not node.framework:
            # ``meter.sum`` of a local: the statement is searched in the frame first
            child.scope = "attribute"
            child.target = f"{node.target}.{attr}" if node.target else None
        else:
            child.scope = "module" if isinstance(owner, nn.Module) else "attribute"
            child.target = f"self.{attr}"
        return child

    def _module(self, node: _Node, queue: deque[_Node]) -> None:
        module = node.value
        try:
            namespace = module.__dict__
            children = list(itertools.islice(module._modules.items(), 512))
            buffers = list(itertools.islice(module._buffers.items(), 256))
        except Exception:
            return
        for name, sub in children:
            if sub is None:
                continue
            queue.append(self._child(node, sub, ("m", name), name))
        for name, buf in buffers:
            if buf is not None:
                queue.append(self._attribute(node, buf, ("b", name), name, module))
        for name in self._extra_keys(module, namespace):
            value = namespace.get(name)
            if isinstance(value, _CONFIG_TYPES) or _kind(type(value)) == _SKIP:
                continue
            queue.append(self._attribute(node, value, ("a", name), name, module))

    def _extra_keys(self, module: Any, namespace: dict[str, Any]) -> tuple[str, ...]:
        """A module's non-standard attribute names, cached while its ``__dict__`` keeps its
        size (a model of hundreds of layers is walked at every census)."""
        cached = self._module_keys.get(id(module))
        if cached is not None and cached[0] == len(namespace):
            return cached[1]
        keys = tuple(
            k
            for k, v in itertools.islice(namespace.items(), MAX_ATTRIBUTES * 2)
            if k not in _STANDARD_MODULE_KEYS and not isinstance(v, _CONFIG_TYPES)
        )
        if len(self._module_keys) > 8192:
            self._module_keys.clear()
        self._module_keys[id(module)] = (len(namespace), keys)
        return keys

    def _object(self, node: _Node, queue: deque[_Node]) -> None:
        value = node.value
        try:
            attrs = list(itertools.islice(vars(value).items(), MAX_ATTRIBUTES))
        except Exception:
            return
        for name, item in attrs:
            if _kind(type(item)) == _SKIP:
                continue
            queue.append(self._attribute(node, item, ("a", name), name, value))

    def _function(self, node: _Node, queue: deque[_Node]) -> None:
        fn = node.value
        code = getattr(fn, "__code__", None)
        if code is None or not is_user_file(code.co_filename):
            return
        cells = fn.__closure__ or ()
        for index, (name, cell) in enumerate(zip(code.co_freevars, cells, strict=False)):
            try:
                contents = cell.cell_contents
            except ValueError:
                continue
            if _kind(type(contents)) == _SKIP:
                continue
            child = self._child(node, contents, ("c", index), None)
            child.name = name
            child.scope = "closure"
            child.site = _function_site(fn)
            child.target = name
            child.key = None
            child.owner_type = None
            child.attr = None
            queue.append(child)
        for index, default in enumerate(fn.__defaults__ or ()):
            if _kind(type(default)) in (_SEQ, _DICT, _SET):
                child = self._child(node, default, ("d", index), None)
                child.name = f"{code.co_name}'s default argument {index + 1}"
                child.scope = "closure"
                child.site = _function_site(fn)
                child.target = None
                queue.append(child)
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None:
            queue.append(self._child(node, wrapped, ("w", None), None))

    def _container(
        self,
        node: _Node,
        kind: int,
        queue: deque[_Node],
        candidates: list[HolderPath],
        result: CensusResult,
    ) -> None:
        value = node.value
        try:
            length = len(value)
        except Exception:
            return
        watch_small = kind in (_SEQ, _DICT) and not node.framework and not isinstance(value, tuple)
        if length == 0:
            if watch_small:
                # The user's empty list or dict (``self.outputs = []``): followed from now
                # on, so what it gains later is seen at the next scan, not the next census.
                candidates.append(self._holder(node, 0, False))
            return
        result.container_items += length
        if kind == _DICT and length <= EXPAND_KEYS and self._expandable(value):
            # A dict of containers (``logs['z']``): each key is its own holder.
            for key, item in list(value.items()):
                child = self._item(node, item, key)
                queue.append(child)
            return
        size = _Measure().size(value)
        total = size.tensor_bytes + size.array_bytes
        if total:
            holder = self._holder(node, total, False)
            last = self._last(value, kind)
            tensor = first_tensor(last) if last is not None else None
            holder.grad = tensor is not None and tensor.grad_fn is not None
            candidates.append(holder)
        elif watch_small and length <= ITEM_GRAD_KEYS:
            # A small dict or list of numbers (``sums = {"loss": 0.0}``): followed, so an
            # item that becomes a tensor with a graph is checked from the next scan on.
            candidates.append(self._holder(node, 0, False))
        # Small containers of tensors with a graph: each item too (``epoch_loss['total']``)
        if kind in (_DICT, _SEQ) and length <= ITEM_GRAD_KEYS:
            items = value.items() if kind == _DICT else enumerate(value)
            for key, item in list(items):
                if not isinstance(key, _SIMPLE_KEYS):
                    continue
                tensor = first_tensor(item, 0)
                if tensor is not None and tensor.grad_fn is not None:
                    child = self._item(node, item, key)
                    candidates.append(self._holder(child, storage_of(tensor)[1], True))
                elif _kind(type(item)) in (_MODULE, _OPTIM):
                    queue.append(self._item(node, item, key))
        elif kind in (_DICT, _SEQ):
            # Modules and optimizers kept in containers are walked as roots of their own.
            items = value.values() if kind == _DICT else value
            for index, item in enumerate(itertools.islice(iter(items), EXPAND_KEYS)):
                if _kind(type(item)) in (_MODULE, _OPTIM) and kind == _SEQ:
                    queue.append(self._item(node, item, index))
        if node.framework and kind == _SEQ:
            # A framework's list of the user's objects (``trainer.callbacks``): each of the
            # user's objects is walked as a root of its own, so what it keeps is named
            # ``trainer.callbacks[3].preds``, not hidden inside the framework's list.
            for index, item in enumerate(itertools.islice(iter(value), EXPAND_KEYS)):
                if _kind(type(item)) == _OBJECT and _user_type(type(item)):
                    queue.append(self._item(node, item, index))

    def _expandable(self, value: dict[Any, Any]) -> bool:
        saw_container = False
        for key, item in value.items():
            if not isinstance(key, str):
                return False  # int keys: an index or a cache, one holder
            kind = _kind(type(item))
            if kind in (_SEQ, _DICT, _SET):
                saw_container = True
            elif kind in (_TENSOR, _ARRAY, _OBJECT):
                return False
        return saw_container

    def _item(self, node: _Node, item: Any, key: Any) -> _Node:
        child = self._child(node, item, ("i", key), None)
        if child.key is None and isinstance(key, _SIMPLE_KEYS):
            child.key = key  # the first item under the named holder: ``logs['z']``
        return child

    @staticmethod
    def _last(value: Any, kind: int) -> Any:
        try:
            if kind == _DICT:
                return next(reversed(value.values()))
            if kind == _SEQ:
                return value[-1]
        except Exception:
            return None
        return None


class CensusWatch:
    """The holders censuses found, re-measured at every holder scan as ``Entry``s."""

    def __init__(self) -> None:
        self.census = Census()
        self._paths: dict[tuple[Any, ...], HolderPath] = {}
        self.last: CensusResult | None = None

    def __len__(self) -> int:
        return len(self._paths)

    def run(self, start: FrameType | None) -> CensusResult:
        result = self.census.run(start)
        self.last = result
        for holder in result.holders:
            key = self._key(holder)
            known = self._paths.get(key)
            if known is not None:
                known.misses = 0
                known.bytes, known.grad = holder.bytes, holder.grad
                continue
            self._paths[key] = holder
        if len(self._paths) > MAX_WATCH:
            ranked = sorted(self._paths.items(), key=lambda kv: _rank(kv[1]))
            self._paths = dict(ranked[:MAX_WATCH])
        return result

    @staticmethod
    def _key(holder: HolderPath) -> tuple[Any, ...]:
        anchor = holder.anchor() if holder.anchor is not None else None
        return (id(anchor) if anchor is not None else holder.code, holder.local, holder.steps)

    def entries(self, scan: Scan, start: FrameType | None) -> None:
        """Append an ``Entry`` per remembered holder to ``scan`` (skipping what it has)."""
        if not self._paths:
            return
        known = {id(e.value) for e in scan.entries if e.value is not None}
        locals_by_code = self._frame_locals(start)
        sites: dict[Any, int] = {}
        dead: list[tuple[Any, ...]] = []
        for key, path in self._paths.items():
            value = self._resolve(path, locals_by_code)
            if value is _MISSING:
                path.misses += 1
                if path.misses >= MISSES_TO_DROP:
                    dead.append(key)
                continue
            path.misses = 0
            site_key = path.site.code
            index = sites.get(site_key)
            if index is None:
                index = len(scan.frames)
                scan.frames.append(path.site)
                scan.frame_tensors.append([])
                sites[site_key] = index
            if id(value) not in known:
                known.add(id(value))
                entry = self._entry(path, value)
                if entry is not None:
                    entry.frame_index = index
                    scan.entries.append(entry)
            for item in self._graph_items(path, value, known):
                item.frame_index = index
                scan.entries.append(item)
        for key in dead:
            del self._paths[key]

    @staticmethod
    def _graph_items(path: HolderPath, value: Any, known: set[int]) -> list[Entry]:
        """The tensors with a graph in a small dict or list, one entry per item
        (``sums['loss']`` once ``sums['loss'] += loss`` made it a tensor)."""
        kind = _kind(type(value))
        if kind not in (_DICT, _SEQ) or isinstance(value, tuple):
            return []
        try:
            if len(value) > ITEM_GRAD_KEYS:
                return []
            items = list(value.items()) if kind == _DICT else list(enumerate(value))
        except Exception:
            return []
        found = []
        for key, item in items:
            if not isinstance(key, _SIMPLE_KEYS):
                continue
            if _kind(type(item)) != _TENSOR:
                found.extend(CensusWatch._graph_attributes(path, key, item, known))
                continue
            if item.grad_fn is None or id(item) in known:
                continue
            known.add(id(item))
            found.append(
                _tensor_entry(
                    f"{path.name}[{key!r}]",
                    path.scope,
                    item,
                    path.owner_type,
                    path.attr,
                    path.target or path.name,
                    target=path.target,
                    key=path.key if path.key is not None else key,
                    statement=path.statement,
                )
            )
        return found

    @staticmethod
    def _graph_attributes(path: HolderPath, key: Any, item: Any, known: set[int]) -> list[Entry]:
        """The tensors with a graph among the first attributes of a user object held in a
        small dict or list (``stats['Loss/total'].sum`` of an average meter): a running sum
        of scalars grows in graph nodes, not bytes, so it must be followed by itself, not
        through its container's first tensor (often this step's ``val``)."""
        tp = type(item)
        if not _user_type(tp) or getattr(tp, "__dictoffset__", 0) == 0:
            return []
        try:
            attrs = object.__getattribute__(item, "__dict__")
        except Exception:
            return []
        if type(attrs) is not dict:
            return []
        found = []
        for attr, value in list(itertools.islice(attrs.items(), ITEM_GRAD_KEYS)):
            if _kind(type(value)) != _TENSOR or value.grad_fn is None or id(value) in known:
                continue
            known.add(id(value))
            found.append(
                _tensor_entry(
                    f"{path.name}[{key!r}].{attr}",
                    "attribute",
                    value,
                    tp,
                    attr,
                    path.target or path.name,
                )
            )
        return found

    @staticmethod
    def _frame_locals(start: FrameType | None) -> dict[Any, dict[str, Any]]:
        """The variables of the stack's frames that remembered holders start from."""
        found: dict[Any, Any] = {}
        frame = start
        while frame is not None:
            code = frame.f_code
            if code not in found and code.co_flags & CO_OPTIMIZED:
                found[code] = frame
            frame = frame.f_back
        return found

    def _resolve(self, path: HolderPath, locals_by_code: dict[Any, Any]) -> Any:
        try:
            if path.anchor is not None:
                value = path.anchor()
                if value is None:
                    return _MISSING
            else:
                if path.code not in locals_by_code:
                    return _MISSING
                names = locals_by_code[path.code]
                if not isinstance(names, dict):  # a frame, read once per scan
                    names = locals_by_code[path.code] = dict(read_locals(names))
                if path.local not in names:
                    return _MISSING
                value = names[path.local]
            for step in path.steps:
                value = _resolve_step(value, step)
            return value
        except Exception:
            return _MISSING

    @staticmethod
    def _entry(path: HolderPath, value: Any) -> Entry | None:
        kind = _kind(type(value))
        if kind == _TENSOR:
            return _tensor_entry(
                path.name,
                path.scope,
                value,
                path.owner_type,
                path.attr,
                path.target or path.name,
                target=path.target,
                key=path.key,
                statement=path.statement,
            )
        if kind == _ARRAY:
            nbytes = _array_key(value)[1]
            return Entry(
                path.name,
                path.scope,
                "tensor",
                nbytes,
                0,
                0,
                value,
                path.owner_type,
                path.attr,
                path.target or path.name,
                census=True,
                host_bytes=nbytes,
                target=path.target,
                key=path.key,
                statement=path.statement,
            )
        if kind not in (_SEQ, _DICT, _SET):
            return None
        try:
            length = len(value)
        except Exception:
            return None
        last = Census._last(value, kind) if length else None
        shape = (id(value), length, id(last))
        path.scans += 1
        if path.shape == shape and path.size is not None and path.scans % REMEASURE_EVERY:
            size = path.size  # same container, same length, same last item: unchanged
        else:
            size = _Measure().size(value)
            path.shape, path.size = shape, size
        tensor = first_tensor(last) if last is not None else None
        return Entry(
            path.name,
            path.scope,
            "container",
            size.tensor_bytes + size.array_bytes,
            size.tensors,
            0,
            value,
            path.owner_type,
            path.attr,
            path.target or path.name,
            length=length,
            estimated=length > EXACT_ELEMENTS,
            grad=tensor is not None and tensor.grad_fn is not None,
            last=last,
            census=True,
            host_bytes=size.array_bytes,
            target=path.target,
            key=path.key,
            statement=path.statement,
        )


_MISSING = object()


def _tensor_entry(
    name: str,
    scope: str,
    tensor: Any,
    owner_type: type | None,
    attr: str | None,
    root: str,
    **extra: Any,
) -> Entry:
    """One tensor as a holder the census found: its storage's bytes, ``grad`` when it
    carries a graph; ``extra``: what locates its statement (target, key, statement)."""
    return Entry(
        name,
        scope,
        "tensor",
        storage_of(tensor)[1],
        1,
        0,
        tensor,
        owner_type,
        attr,
        root,
        grad=tensor.grad_fn is not None,
        census=True,
        **extra,
    )


def iter_holders(result: CensusResult) -> Iterator[HolderPath]:
    """The holders of one census, largest first (for tests and the dashboard)."""
    return iter(sorted(result.holders, key=lambda h: -h.bytes))
