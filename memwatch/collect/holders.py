"""Who holds tensor memory at a step end: a bounded scan of named tensors.

The scan starts from the user frames the tracker hands to ``Probe.on_step_end`` and names
what it finds the way a person would write it: ``loss``, ``meter.sum``, ``losses``,
``model.encoder.cache``, ``ACTIVATIONS``. It looks at

* the frames' variables (for a module-level loop: the script's globals, filtered to
  tensors, containers, modules and plain objects);
* one level of attributes of plain objects those variables hold (``meter.sum``,
  ``self.losses``);
* tensors and containers stored as attributes of ``nn.Module``s, at any depth of the
  module tree (``model.encoder.cache``), never parameters or buffers;
* lists, tuples, deques and dicts of tensors: length, bytes (exact up to
  ``EXACT_ELEMENTS``, estimated from a sample beyond), the last elements for ``grad_fn``.

Every part is bounded (names per frame, attributes per object, modules per step,
elements per container) because it runs at every step end; storages are counted once.
A gc census would find more but costs tens of milliseconds (docs/measurements.md §1).

One CPython pitfall shapes ``read_locals``: on 3.11/3.12 ``frame.f_locals`` of a function
frame is a dict cached *on the frame* that keeps strong references to the values it saw
until the next access. Reading it and walking away would keep last step's ``pred`` alive
through the next forward — memwatch raising the very peak it diagnoses. We copy the items
and clear that cache (only for function frames; a module frame's ``f_locals`` is the real
globals dict).
"""

from __future__ import annotations

import itertools
import sys
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import BuiltinFunctionType, FrameType, FunctionType, MethodType, ModuleType
from typing import Any

import torch
from torch import nn

from memwatch.collect.frames import display_path
from memwatch.records import Holder, Location

CO_OPTIMIZED = 0x0001
_CLEAR_FRAME_LOCALS = sys.version_info < (3, 13)  # PEP 667 made f_locals a live proxy

MAX_NAMES_PER_FRAME = 512
MAX_ATTRIBUTES = 32
EXACT_ELEMENTS = 32
SAMPLE_HEAD = 4
SAMPLE_TAIL = 12
MAX_MODULES = 512
MODULES_PER_STEP = 128
SWEEP_EVERY = 4
REFRESH_EVERY = 64
MAX_OPTIMIZER_TENSORS = 4096

_SKIP, _TENSOR, _SEQ, _DICT, _MODULE, _OPTIM, _OBJECT = range(7)
_SCALARS = (int, float, complex, bool, str, bytes, bytearray, type(None), range, slice)
_CALLABLES = (
    FunctionType,
    BuiltinFunctionType,
    MethodType,
    ModuleType,
    type,
    property,
    staticmethod,
    classmethod,
)
_OBJECT_MODULE_ALLOW = ("torch.utils.data.dataset",)
#: Objects of standard-library classes (argparse.Namespace, __future__ features, loggers)
#: are not where training code keeps tensors; scanning their attributes costs per step.
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"builtins", "__future__"}
#: Module attributes with these value types are configuration (``in_features``, ``p``);
#: a cache is usually initialised to None, a tensor or a container, which stay watched.
_CONFIG_TYPES = (int, float, bool, str)


def read_locals(frame: FrameType, limit: int = MAX_NAMES_PER_FRAME) -> list[tuple[str, Any]]:
    """A frame's variables as a list, without leaving references behind on the frame.

    Function frames: the ``f_locals`` snapshot is cleared after copying (3.11/3.12), so a
    value the user deletes or rebinds is freed at once as without memwatch. Module frames:
    ``f_locals`` is the module's globals, read in place (at most ``limit`` names).
    """
    try:
        mapping = frame.f_locals
    except Exception:
        return []
    try:
        if frame.f_code.co_flags & CO_OPTIMIZED:
            items = list(itertools.islice(mapping.items(), limit))
            if _CLEAR_FRAME_LOCALS and type(mapping) is dict:
                mapping.clear()
            return items
        return list(itertools.islice(mapping.items(), limit))
    except RuntimeError:  # changed size during iteration (another thread)
        return []


def storage_of(tensor: Any) -> tuple[int, int]:
    """(storage key, storage bytes) of a tensor; views count their whole storage once."""
    try:
        if tensor.is_meta:
            return id(tensor), 0
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        return (key if key else id(tensor)), storage.nbytes()
    except Exception:  # sparse, nested, wrapper subclasses
        try:
            return id(tensor), int(tensor.element_size() * tensor.nelement())
        except Exception:
            return id(tensor), 0


def _unseen_bytes(tensor: Any, seen_storages: set[int]) -> int:
    """The tensor's storage bytes the first time that storage is met in a scan, else 0."""
    key, nbytes = storage_of(tensor)
    if key in seen_storages:
        return 0
    seen_storages.add(key)
    return nbytes


@dataclass(slots=True)
class Entry:
    """One named holder found by a scan.

    The ``value`` reference is transient: a ``Scan`` lives only for one ``on_step_end``.
    ``scope`` is ``local`` (a function variable), ``global`` (a module-level name),
    ``attribute`` (of a plain object held by a variable) or ``module`` (a tensor attribute
    of an ``nn.Module``); ``owner_type``/``attr`` say whose attribute it is, so the
    statement that sets it can be found in the owner's class.
    """

    name: str
    scope: str
    kind: str  # "tensor" | "container" | "model" | "optimizer"
    bytes: int
    tensors: int
    frame_index: int
    value: Any = None
    owner_type: type | None = None
    attr: str | None = None
    root: str = ""  # the frame variable the name starts from
    length: int = 0
    estimated: bool = False
    grad: bool = False  # a tensor with grad_fn (for containers: the last element has one)
    last: Any = None  # containers: the last element (tensor or tuple of tensors)
    # Set by the census (collect/census.py) for holders it found beyond the scan's reach:
    census: bool = False
    host_bytes: int = 0  # of ``bytes``: host arrays (numpy)
    target: str | None = None  # the name statements store through (``logs`` for ``logs['z']``)
    key: object = None  # the item of ``target`` that holds it (``'z'``), for the statement
    statement: Any = None  # a statement known without searching (a decorator's line)


_display_paths: dict[str, str] = {}


def cached_display_path(filename: str) -> str:
    """``frames.display_path`` memoised: ``os.path.relpath`` costs ~15 µs per call."""
    shown = _display_paths.get(filename)
    if shown is None:
        if len(_display_paths) > 1024:
            _display_paths.clear()
        shown = _display_paths[filename] = display_path(filename)
    return shown


@dataclass(slots=True)
class FrameInfo:
    """What the probes need of a scanned frame after the scan (no frame reference)."""

    code: Any
    filename: str
    first_line: int
    function: str
    line: int
    is_module: bool

    @classmethod
    def of(cls, frame: FrameType) -> FrameInfo:
        code = frame.f_code
        is_module = not (code.co_flags & CO_OPTIMIZED)
        return cls(
            code, code.co_filename, code.co_firstlineno, code.co_name, frame.f_lineno, is_module
        )

    @property
    def location(self) -> Location:
        return Location(cached_display_path(self.filename), self.line, self.function)


@dataclass(slots=True)
class Scan:
    """The result of one scan; drop it when the step end is handled (it holds tensors)."""

    step: int
    entries: list[Entry] = field(default_factory=list)
    frames: list[FrameInfo] = field(default_factory=list)
    #: per frame: the tensors bound directly to its variables (name, tensor)
    frame_tensors: list[list[tuple[str, Any]]] = field(default_factory=list)

    def holders(self, limit: int = 12) -> list[Entry]:
        """The biggest holders, largest first (entries with bytes only)."""
        held = [e for e in self.entries if e.bytes > 0]
        held.sort(key=lambda e: e.bytes, reverse=True)
        return held[:limit]


@dataclass(slots=True)
class _ModuleInfo:
    ref: Any  # weakref to the root module
    subs: list[tuple[str, Any]]  # (dotted path, weakref)
    extra_keys: dict[int, tuple[int, tuple[str, ...]]]  # id(sub) -> (len(__dict__), keys)
    param_bytes: int
    param_count: int
    refreshed: int
    cursor: int = 0
    calls: int = 0
    hot: list[tuple[str, Any, tuple[str, ...]]] | None = None  # subs worth a look each scan


class HolderScanner:
    """Scans frames for named tensors; keeps small caches between steps (module trees)."""

    def __init__(self) -> None:
        self._kinds: dict[type, int] = {}
        self._modules: dict[int, _ModuleInfo] = {}
        self._optimizers: dict[int, tuple[Any, int, int, int]] = {}  # id -> (ref, bytes, n, step)
        self._standard_keys = frozenset(vars(nn.Module()).keys())
        self._globals: dict[int, list[Any]] = {}  # outer module frames: see _outer_globals

    # -- classification ----------------------------------------------------------------------
    def _kind(self, tp: type) -> int:
        kind = self._kinds.get(tp)
        if kind is None:
            kind = self._classify(tp)
            if len(self._kinds) < 4096:
                self._kinds[tp] = kind
        return kind

    def _classify(self, tp: type) -> int:
        try:
            if issubclass(tp, torch.Tensor):
                return _SKIP if issubclass(tp, nn.Parameter) else _TENSOR
            if issubclass(tp, (list, tuple, deque)):
                return _SEQ
            if issubclass(tp, dict):
                return _DICT
            if issubclass(tp, nn.Module):
                return _MODULE
            if issubclass(tp, torch.optim.Optimizer):
                return _OPTIM
            if issubclass(tp, _SCALARS) or issubclass(tp, _CALLABLES):
                return _SKIP
            module = getattr(tp, "__module__", "") or ""
            if (
                module.split(".", 1)[0] in _STDLIB
                or module.startswith("memwatch")
                or (module.startswith("torch") and not module.startswith(_OBJECT_MODULE_ALLOW))
            ):
                return _SKIP  # memwatch's own objects hold copies of what it measures
            if getattr(tp, "__dictoffset__", 0) == 0:
                return _SKIP  # __slots__ objects, C types
            return _OBJECT
        except Exception:
            return _SKIP

    # -- the scan ----------------------------------------------------------------------------
    def scan(self, frames: Iterable[FrameType], step: int) -> Scan:
        result = Scan(step)
        seen_storages: set[int] = set()
        seen_objects: set[int] = set()
        frames = list(frames)
        namespaces: set[int] = set()
        for index, frame in enumerate(frames):
            info = FrameInfo.of(frame)
            is_module = info.is_module
            if is_module:
                namespaces.add(id(frame.f_globals))
            result.frames.append(info)
            items = self._outer_globals(frame) if is_module and index > 0 else read_locals(frame)
            self._scan_names(result, items, is_module, index, seen_storages, seen_objects, step)
        # The module of a user function whose module frame is not on the stack (a test
        # function called by pytest, a train() imported from elsewhere): its globals hold
        # memory as much as the script's do (``LOSSES.append(loss)`` in a test module).
        for frame in frames:
            if id(frame.f_globals) in namespaces:
                continue
            namespaces.add(id(frame.f_globals))
            code = frame.f_code
            index = len(result.frames)
            result.frames.append(
                FrameInfo(
                    code, code.co_filename, code.co_firstlineno, "<module>", frame.f_lineno, True
                )
            )
            items = self._module_globals(frame.f_globals)
            self._scan_names(result, items, True, index, seen_storages, seen_objects, step)
        return result

    def _scan_names(
        self,
        result: Scan,
        items: list[tuple[str, Any]],
        is_module: bool,
        index: int,
        seen_storages: set[int],
        seen_objects: set[int],
        step: int,
    ) -> None:
        """Entries for one frame's names (``index`` in ``result.frames``)."""
        entries = result.entries
        kinds = self._kinds
        direct: list[tuple[str, Any]] = []
        result.frame_tensors.append(direct)
        scope = "global" if is_module else "local"
        for name, value in items:
            tp = type(value)
            kind = kinds.get(tp)
            if kind is None:
                kind = self._kind(tp)
            if kind == _SKIP or (is_module and name[:2] == "__"):
                continue
            if kind != _TENSOR:
                self._visit(
                    result,
                    name,
                    value,
                    kind,
                    scope,
                    index,
                    name,
                    None,
                    None,
                    seen_storages,
                    seen_objects,
                    step,
                    depth=0,
                )
                continue
            # Tensors, the common case, inline (this loop runs at every step end).
            oid = id(value)
            if oid in seen_objects:
                continue  # the same tensor under another name (a closure, outer frame)
            seen_objects.add(oid)
            direct.append((name, value))
            nbytes = _unseen_bytes(value, seen_storages)
            entries.append(
                Entry(
                    name,
                    scope,
                    "tensor",
                    nbytes,
                    1,
                    index,
                    value,
                    None,
                    None,
                    name,
                    grad=not value.is_leaf,
                )
            )

    def _module_globals(self, namespace: dict[str, Any]) -> list[tuple[str, Any]]:
        """A module's globals read through its namespace (no frame of it on the stack),
        walked in full every ``SWEEP_EVERY`` scans like ``_outer_globals``."""
        key = -id(namespace)
        cached = self._globals.get(key)
        if cached is not None and cached[0] is namespace and cached[1] == len(namespace):
            cached[3] += 1
            if cached[3] % SWEEP_EVERY:
                get = namespace.get
                return [(name, get(name)) for name in cached[2]]
        try:
            items = list(itertools.islice(namespace.items(), MAX_NAMES_PER_FRAME))
        except RuntimeError:  # changed size during iteration (another thread)
            return []
        kinds = self._kinds
        names = [
            name
            for name, value in items
            if kinds.get(type(value), _OBJECT) != _SKIP and not name.startswith("__")
        ]
        if len(self._globals) > 64:
            self._globals.clear()
        self._globals[key] = [namespace, len(namespace), names, 0]
        return items

    def _outer_globals(self, frame: FrameType) -> list[tuple[str, Any]]:
        """An outer module frame's globals, walked in full only every ``SWEEP_EVERY`` scans.

        The script's module namespace (when the loop runs in a function) is mostly imports,
        functions and classes; in between full walks only the names that held tensors,
        containers, modules or objects last time are read (a new name is seen at once).
        """
        namespace = frame.f_globals
        key = id(frame.f_code)
        cached = self._globals.get(key)
        if cached is not None and cached[0] is namespace and cached[1] == len(namespace):
            cached[3] += 1
            if cached[3] % SWEEP_EVERY:
                get = namespace.get
                return [(name, get(name)) for name in cached[2]]
        items = read_locals(frame)
        kinds = self._kinds
        names = [
            name
            for name, value in items
            if kinds.get(type(value), _OBJECT) != _SKIP and not name.startswith("__")
        ]
        if len(self._globals) > 64:
            self._globals.clear()
        self._globals[key] = [namespace, len(namespace), names, 0]
        return items

    def _visit(
        self,
        result: Scan,
        name: str,
        value: Any,
        kind: int,
        scope: str,
        index: int,
        root: str,
        owner_type: type | None,
        attr: str | None,
        seen_storages: set[int],
        seen_objects: set[int],
        step: int,
        depth: int,
    ) -> None:
        if kind == _TENSOR:
            oid = id(value)
            if oid in seen_objects:
                return  # the same tensor under another name (a closure, an outer frame)
            seen_objects.add(oid)
            nbytes = _unseen_bytes(value, seen_storages)
            result.entries.append(
                Entry(
                    name,
                    scope,
                    "tensor",
                    nbytes,
                    1,
                    index,
                    value,
                    owner_type,
                    attr,
                    root,
                    grad=not value.is_leaf,
                )
            )
        elif kind in (_SEQ, _DICT):
            oid = id(value)
            if oid in seen_objects:
                return
            seen_objects.add(oid)
            entry = self._container(name, value, kind, scope, index, root, owner_type, attr)
            if entry is not None:
                result.entries.append(entry)
        elif kind == _MODULE:
            oid = id(value)
            if oid in seen_objects:
                return
            seen_objects.add(oid)
            self._module(result, name, value, scope, index, root, seen_storages, seen_objects, step)
        elif kind == _OPTIM:
            oid = id(value)
            if oid in seen_objects:
                return
            seen_objects.add(oid)
            nbytes, count = self._optimizer_state(value, step)
            if nbytes:
                result.entries.append(
                    Entry(
                        f"{name}.state",
                        scope,
                        "optimizer",
                        nbytes,
                        count,
                        index,
                        None,
                        type(value),
                        "state",
                        root,
                    )
                )
        elif kind == _OBJECT and depth == 0:
            oid = id(value)
            if oid in seen_objects:
                return
            seen_objects.add(oid)
            try:
                attrs = list(itertools.islice(vars(value).items(), MAX_ATTRIBUTES))
            except Exception:
                return
            owner = type(value)
            for attr_name, attr_value in attrs:
                sub_kind = self._kind(type(attr_value))
                if sub_kind in (_SKIP, _OBJECT):
                    continue
                self._visit(
                    result,
                    f"{name}.{attr_name}",
                    attr_value,
                    sub_kind,
                    "attribute",
                    index,
                    root,
                    owner,
                    attr_name,
                    seen_storages,
                    seen_objects,
                    step,
                    depth=1,
                )

    def _container(
        self,
        name: str,
        value: Any,
        kind: int,
        scope: str,
        index: int,
        root: str,
        owner_type: type | None,
        attr: str | None,
    ) -> Entry | None:
        try:
            length = len(value)
        except Exception:
            return None
        if length == 0:
            if isinstance(value, tuple):
                return None
            # Empty lists are kept (bytes 0) so that the first append is seen as growth.
            return Entry(name, scope, "container", 0, 0, index, value, owner_type, attr, root)
        try:
            if kind == _DICT:
                values: Any = value.values()
                last = next(reversed(values))
                if not self._tensorish(last) and not self._tensorish(next(iter(values))):
                    return None  # a dict of numbers, strings, objects: not a tensor holder
                if length <= EXACT_ELEMENTS:
                    sample = list(values)
                else:
                    sample = list(itertools.islice(iter(values), SAMPLE_HEAD))
                    tail = list(itertools.islice(reversed(values), SAMPLE_TAIL))
                    sample.extend(reversed(tail))
            else:
                last = value[-1]
                if not self._tensorish(last) and not self._tensorish(value[0]):
                    return None
                if length <= EXACT_ELEMENTS:
                    sample = list(value)
                else:
                    sample = [value[i] for i in range(SAMPLE_HEAD)]
                    sample.extend(value[i] for i in range(length - SAMPLE_TAIL, length))
        except Exception:
            return None
        exact = length <= EXACT_ELEMENTS
        total = 0
        tensors = 0
        any_tensor = False
        # Storages are deduplicated within the container only: a container's bytes must not
        # depend on which other name (``out``, shared with ``out.detach()`` in the list)
        # happened to be scanned first, or its growth would lag by a step.
        inner: set[int] | None = set() if exact else None
        for element in sample:
            nbytes, count = self._element_bytes(element, inner)
            total += nbytes
            tensors += count
            any_tensor = any_tensor or count > 0
        if not any_tensor:
            return None
        if not exact:
            total = int(total * length / len(sample))
            tensors = int(tensors * length / len(sample))
        grad_tensor = first_tensor(last)
        return Entry(
            name,
            scope,
            "container",
            total,
            tensors,
            index,
            value,
            owner_type,
            attr,
            root,
            length=length,
            estimated=not exact,
            grad=grad_tensor is not None and not grad_tensor.is_leaf,
            last=last,
        )

    def _tensorish(self, element: Any) -> bool:
        """A tensor, or a container whose first item is one (``(pred, target)`` pairs)."""
        kind = self._kind(type(element))
        if kind == _TENSOR:
            return True
        if kind in (_SEQ, _DICT):
            try:
                if not element:
                    return False
                first = next(iter(element.values())) if kind == _DICT else element[0]
            except Exception:
                return False
            return self._kind(type(first)) == _TENSOR
        return False

    def _element_bytes(self, element: Any, seen: set[int] | None) -> tuple[int, int]:
        kind = self._kind(type(element))
        if kind == _TENSOR:
            key, nbytes = storage_of(element)
            if seen is not None:
                if key in seen:
                    return 0, 1
                seen.add(key)
            return nbytes, 1
        if kind in (_SEQ, _DICT):  # one level of nesting: (pred, target) pairs
            try:
                items = element.values() if kind == _DICT else element
                inner = list(itertools.islice(iter(items), 8))
            except Exception:
                return 0, 0
            total = count = 0
            for item in inner:
                if self._kind(type(item)) == _TENSOR:
                    key, nbytes = storage_of(item)
                    if seen is not None:
                        if key in seen:
                            count += 1
                            continue
                        seen.add(key)
                    total += nbytes
                    count += 1
            return total, count
        return 0, 0

    # -- modules -----------------------------------------------------------------------------
    def _module_info(self, module: nn.Module, step: int) -> _ModuleInfo:
        info = self._modules.get(id(module))
        if info is not None and info.ref() is module and step - info.refreshed < REFRESH_EVERY:
            return info
        subs: list[tuple[str, Any]] = []
        for path, sub in itertools.islice(module.named_modules(), MAX_MODULES):
            subs.append((path, weakref.ref(sub)))
        storages: set[int] = set()
        nbytes = count = 0
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            key, size = storage_of(tensor)
            count += 1
            if key not in storages:
                storages.add(key)
                nbytes += size
        # extra_keys start afresh: a config attribute that became a tensor is seen again.
        info = _ModuleInfo(weakref.ref(module), subs, {}, nbytes, count, step)
        if len(self._modules) > 64:
            self._modules.clear()
        self._modules[id(module)] = info
        return info

    def _module(
        self,
        result: Scan,
        name: str,
        module: nn.Module,
        scope: str,
        index: int,
        root: str,
        seen_storages: set[int],
        seen_objects: set[int],
        step: int,
    ) -> None:
        info = self._module_info(module, step)
        if info.param_bytes:
            result.entries.append(
                Entry(
                    name,
                    scope,
                    "model",
                    info.param_bytes,
                    info.param_count,
                    index,
                    None,
                    None,
                    None,
                    root,
                )
            )
        info.calls += 1
        if info.hot is None or info.calls % SWEEP_EVERY == 0:
            info.hot = self._sweep(info)
        for path, ref, keys in info.hot:
            sub = ref()
            if sub is None:
                continue
            namespace = sub.__dict__
            for key in keys:
                value = namespace.get(key)
                kind = self._kind(type(value))
                if kind not in (_TENSOR, _SEQ, _DICT):
                    continue
                dotted = f"{name}{_module_path(path)}.{key}"
                self._visit(
                    result,
                    dotted,
                    value,
                    kind,
                    "module",
                    index,
                    root,
                    type(sub),
                    key,
                    seen_storages,
                    seen_objects,
                    step,
                    depth=1,
                )

    def _sweep(self, info: _ModuleInfo) -> list[tuple[str, Any, tuple[str, ...]]]:
        """The submodules with non-standard, non-config attributes (a window of them).

        Run every ``SWEEP_EVERY`` scans: an attribute a module gains later (a cache set to
        a tensor on first use) is found within a few steps, and in between only modules
        known to have such attributes cost anything.
        """
        subs = info.subs
        if len(subs) <= MODULES_PER_STEP:
            window = subs
        else:
            start = info.cursor % len(subs)
            window = (subs + subs)[start : start + MODULES_PER_STEP]
            info.cursor = start + MODULES_PER_STEP
        standard = self._standard_keys
        hot: dict[int, tuple[str, Any, tuple[str, ...]]] = {}
        for entry in info.hot or ():
            known = entry[1]()
            if known is not None:
                hot[id(known)] = entry
        for path, ref in window:
            sub = ref()
            if sub is None:
                continue
            try:
                namespace = sub.__dict__
            except AttributeError:
                continue
            cached = info.extra_keys.get(id(sub))
            if cached is None or cached[0] != len(namespace):
                keys = tuple(
                    k
                    for k, v in namespace.items()
                    if k not in standard and not isinstance(v, _CONFIG_TYPES)
                )
                info.extra_keys[id(sub)] = (len(namespace), keys)
            else:
                keys = cached[1]
            if keys:
                hot[id(sub)] = (path, ref, keys)
            else:
                hot.pop(id(sub), None)
        return list(hot.values())

    def _optimizer_state(self, optimizer: Any, step: int) -> tuple[int, int]:
        cached = self._optimizers.get(id(optimizer))
        if cached is not None and cached[0]() is optimizer and step - cached[3] < REFRESH_EVERY:
            return cached[1], cached[2]
        nbytes = count = 0
        try:
            states = list(itertools.islice(optimizer.state.values(), MAX_OPTIMIZER_TENSORS))
            for state in states:
                for value in state.values() if isinstance(state, dict) else ():
                    if isinstance(value, torch.Tensor):
                        nbytes += storage_of(value)[1]
                        count += 1
        except Exception:
            pass
        if len(self._optimizers) > 16:
            self._optimizers.clear()
        try:
            self._optimizers[id(optimizer)] = (weakref.ref(optimizer), nbytes, count, step)
        except TypeError:
            pass
        return nbytes, count


def _module_path(path: str) -> str:
    """``.encoder.layers[2]`` for the ``named_modules`` path ``encoder.layers.2``."""
    if not path:
        return ""
    return "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in path.split("."))


def first_tensor(value: Any, depth: int = 3) -> Any:
    """The tensor in ``value`` (or in a small tuple/list/dict of them, nested up to
    ``depth`` levels: ``{"epoch": 3, "weights": {...}}``), for grad_fn and identity checks."""
    if isinstance(value, torch.Tensor):
        return value
    if depth <= 0:
        return None
    items: Any = None
    if isinstance(value, (tuple, list)) and value and len(value) <= 8:
        items = value
    elif isinstance(value, dict) and value and len(value) <= 8:
        items = value.values()
    elif not isinstance(value, (nn.Module, type, str, bytes)) and hasattr(value, "__dict__"):
        try:  # a record object (``Record(value=...)``) kept in a list
            items = list(itertools.islice(vars(value).values(), 8))
        except TypeError:
            return None
    if items is None:
        return None
    nested = []
    for item in items:
        if isinstance(item, torch.Tensor):
            return item
        if isinstance(item, (tuple, list, dict)) or (
            hasattr(item, "__dict__") and not isinstance(item, (nn.Module, type))
        ):
            nested.append(item)
    for item in nested:
        found = first_tensor(item, depth - 1)
        if found is not None:
            return found
    return None


class HolderReporter:
    """Decides when the "what holds memory" snapshot changed enough to be written.

    A run file grows by a few rows per *change*, not per step: a snapshot is emitted when
    the set of top names changes, or a holder's bytes moved by more than ``relative`` and
    ``absolute``. Readers take the latest snapshot at or before a step.
    """

    def __init__(self, limit: int = 12, relative: float = 0.10, absolute: int = 64 * 1024):
        self.limit = limit
        self.relative = relative
        self.absolute = absolute
        self._last: dict[str, int] = {}
        self._fingerprint: tuple[tuple[str, int], ...] = ()

    def changed(self, entries: list[Entry]) -> bool:
        current = {e.name: e.bytes for e in entries}
        if current.keys() != self._last.keys():
            return True
        for name, nbytes in current.items():
            old = self._last[name]
            delta = abs(nbytes - old)
            if delta > self.absolute and delta > self.relative * max(old, 1):
                return True
        return False

    def maybe_records(self, scan: Scan) -> list[Holder] | None:
        fingerprint = tuple([(e.name, e.bytes) for e in scan.entries])
        if fingerprint == self._fingerprint:
            return None  # nothing moved at all (the usual step): no sorting, no records
        self._fingerprint = fingerprint
        top = scan.holders(self.limit)
        if not self.changed(top):
            return None
        self._last = {e.name: e.bytes for e in top}
        return [
            Holder(scan.step, e.name, e.bytes, e.tensors, scan.frames[e.frame_index].location)
            for e in top
        ]
