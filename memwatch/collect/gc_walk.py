"""Walking what one object keeps alive: its tensor bytes, the reference cycle through it,
and whether it is garbage that only the cyclic collector can free.

Three questions about one object ``root``, answered from a bounded breadth-first walk of
``gc.get_referents`` (the edges the garbage collector itself follows):

* **bytes**: tensor storages reachable from ``root`` (each storage once, gradients of
  leaf tensors included): what stays allocated while ``root`` is alive;
* **cycle**: a path of references from ``root`` back to itself, with names a person
  would write (``.which_act``, ``.__self__``, ``[0]``, ``closure 'self'``);
* **garbage**: whether ``root`` is unreachable right now without any ``gc.collect()``.
  The test is the collector's own, restricted to the walked set S: every object's
  references from inside S are subtracted from its reference count; an object with
  references left over is held from outside; ``root`` is garbage when no object that
  reaches it (inside S) is held from outside. Anything the walk does not see (a cut
  edge, an object beyond the bound, an immortal object, a reference from C) counts as
  *outside*, so a bound or an unusual object can only make the answer "reachable",
  never a false "garbage". A reference count that the walk cannot explain (lower than
  the references it found) makes the answer unknown.

The walk never expands classes, modules, code, frames or a function's globals (a
function contributes its closure, defaults and ``__dict__``), caps each object's fan-out
and the objects walked, and holds ``root`` only while it runs (the caller passes a
weak reference).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import (
    BuiltinFunctionType,
    CellType,
    CodeType,
    FrameType,
    FunctionType,
    MethodType,
    ModuleType,
)
from typing import Any

import torch

from memwatch.collect.frames import is_own_file
from memwatch.collect.holders import storage_of

#: Objects walked from one root (a model of about 150 modules fits; ~7 ms when reached).
MAX_WALK = 2048
#: References followed out of one object (a huge list is cut: conservative).
MAX_FANOUT = 512
#: Hops of a cycle path kept for the report.
MAX_PATH = 12

_NOT_WALKED = (type, ModuleType, CodeType, FrameType, BuiltinFunctionType, str, bytes)
#: memwatch's own classes live in this package: their objects are never walked (``_ours``).
_OWN_PACKAGE = "memwatch."
_own_types: dict[type, bool] = {}


def _ours(obj: Any) -> bool:
    """Whether ``obj`` is memwatch's own: an instance of one of its classes (the root
    module wrapper, the tracker, a probe) or a function it defined (a patched method).

    While the watch runs, the wrapper on a root module leads to the tracker, its probes
    and what they remember (the loop's globals), and from there back to the model: a
    cycle of memwatch's making, gone at stop. Walking it would report the user's model as
    held on a reference cycle; not walking it can only make a verdict "reachable".
    """
    tp = type(obj)
    if tp is FunctionType:
        return is_own_file(obj.__code__.co_filename)
    known = _own_types.get(tp)
    if known is None:
        known = getattr(tp, "__module__", "").startswith(_OWN_PACKAGE)
        if len(_own_types) < 4096:  # bounded: classes made at run time stay free
            _own_types[tp] = known
    return known


def _referents(obj: Any) -> list[Any]:
    """The references the walk follows out of ``obj`` (a function: closure, defaults,
    ``__dict__``; never its globals; nothing of memwatch's own, ``_ours``)."""
    if _ours(obj):
        return []
    if isinstance(obj, FunctionType):
        out = [obj.__closure__, obj.__defaults__, obj.__kwdefaults__]
        try:
            out.append(obj.__dict__)
        except AttributeError:
            pass
        return [o for o in out if o is not None]
    if isinstance(obj, _NOT_WALKED):
        return []
    found = gc.get_referents(obj)
    if len(found) > MAX_FANOUT:
        del found[MAX_FANOUT:]
    return found


def _walkable(obj: Any) -> bool:
    return (gc.is_tracked(obj) or isinstance(obj, torch.Tensor)) and not isinstance(
        obj, _NOT_WALKED
    )


@dataclass(slots=True)
class Walk:
    """The objects reachable from a root (index 0), the edges between them, and who
    found each first (for naming a path). Holds the objects: drop it promptly."""

    members: list[Any] = field(default_factory=list)
    edges: list[list[int]] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    truncated: bool = False

    def clear(self) -> None:
        self.members.clear()
        self.edges.clear()
        self.parent.clear()


def walk(root: Any, limit: int = MAX_WALK) -> Walk:
    """Breadth-first over ``_referents`` from ``root``, at most ``limit`` objects."""
    result = Walk([root], [[]], [-1])
    index = {id(root): 0}
    members, edges, parent = result.members, result.edges, result.parent
    position = 0
    while position < len(members):
        children = edges[position]
        for child in _referents(members[position]):
            key = index.get(id(child))
            if key is None:
                if not _walkable(child):
                    continue
                if len(members) >= limit:
                    result.truncated = True
                    continue
                key = index[id(child)] = len(members)
                members.append(child)
                edges.append([])
                parent.append(position)
            children.append(key)
        position += 1
    return result


def tensor_bytes(found: Walk) -> int:
    """Bytes of the tensor storages among the walked objects (and leaf gradients)."""
    seen: set[int] = set()
    total = 0
    for obj in found.members:
        if not isinstance(obj, torch.Tensor):
            continue
        for tensor in (obj, obj.grad if obj.is_leaf else None):
            if tensor is None:
                continue
            key, nbytes = storage_of(tensor)
            if key not in seen:
                seen.add(key)
                total += nbytes
    return total


def _chain(found: Walk) -> list[int] | None:
    """Indices from the root (0) along the walk to an object referring to the root, and
    the root again; None when no walked object refers to it."""
    closing: int | None = None
    shortest = 0
    for k, children in enumerate(found.edges):
        if 0 in children:
            depth = _depth(found, k)
            if closing is None or depth < shortest:
                closing, shortest = k, depth
    if closing is None:
        return None
    chain = [0]
    node = closing
    while node > 0 and len(chain) < 64:
        chain.insert(1, node)
        node = found.parent[node]
    chain.append(0)
    return chain


def _depth(found: Walk, node: int) -> int:
    depth = 0
    while node > 0 and depth < 64:
        node = found.parent[node]
        depth += 1
    return depth


def cycle_objects(found: Walk) -> list[Any]:
    """The objects on the cycle path (root first, not repeated at the end)."""
    chain = _chain(found)
    return [] if chain is None else [found.members[k] for k in chain[:-1]]


def cycle_path(found: Walk) -> list[tuple[str, str]] | None:
    """The path the walk found from the root back to itself as ``(edge, type)`` hops
    (``(".which_act", "bound method Net.relu_act")``, ``(".__self__", "Net")``), or None
    when no walked object refers to the root."""
    chain = _chain(found)
    if chain is None:
        return None
    objects = [found.members[k] for k in chain]
    hops: list[tuple[str, str]] = []
    for position in range(1, len(objects)):
        label = edge_label(objects[: position + 1])
        if label is not None:
            hops.append((label, describe(objects[position])))
    return hops[:MAX_PATH]


def edge_label(chain: list[Any]) -> str | None:
    """How ``chain[-2]`` refers to ``chain[-1]``, as code would write it (the objects
    before give context: whose ``__dict__``, which function's closure). None for a hop
    the next label names (into an instance ``__dict__``, a closure tuple or cell)."""
    parent, child = chain[-2], chain[-1]
    grandparent = chain[-3] if len(chain) >= 3 else None
    try:
        if isinstance(parent, MethodType):
            return ".__self__" if parent.__self__ is child else ".__func__"
        if isinstance(parent, FunctionType):
            return None  # its closure tuple or defaults: the next hop names it
        if isinstance(parent, CellType):
            function = chain[-4] if len(chain) >= 4 else None
            name = "?"
            if isinstance(function, FunctionType) and function.__closure__:
                for var, cell in zip(function.__code__.co_freevars, function.__closure__):
                    if cell is parent:
                        name = var
            return f" closure {name!r}"
        if isinstance(parent, tuple) and parent and isinstance(parent[0], CellType):
            return None  # a closure tuple: the cell's hop names the variable
        if isinstance(parent, dict):
            namespace = _namespace(grandparent) is parent
            for key, value in parent.items():
                if value is child:
                    if namespace and isinstance(key, str):
                        return f".{key}"
                    return f"[{_key_text(key)}]"
            return "[?]"
        if isinstance(parent, (list, tuple, set, frozenset)):
            for position, value in enumerate(parent):
                if value is child:
                    return f"[{position}]"
            return "[?]"
        namespace = _namespace(parent)
        if namespace is child:
            return None  # the instance dict: its key is the attribute name
        if isinstance(namespace, dict):
            for key, value in namespace.items():
                if value is child:
                    return f".{key}"
        for name in getattr(type(parent), "__slots__", ()) or ():
            if getattr(parent, name, None) is child:
                return f".{name}"
    except Exception:
        pass
    return " ->"


def _namespace(obj: Any) -> Any:
    if obj is None or isinstance(obj, (dict, list, tuple, FunctionType, MethodType)):
        return None
    try:
        return object.__getattribute__(obj, "__dict__")
    except Exception:
        return None


def _key_text(key: Any) -> str:
    if isinstance(key, (str, int, float, bool)) or key is None:
        text = repr(key)
        return text if len(text) <= 40 else text[:37] + "..."
    return type(key).__name__


def describe(obj: Any) -> str:
    """A short type description of one object on a path."""
    if isinstance(obj, MethodType):
        return f"bound method {getattr(obj.__func__, '__qualname__', '?')}"
    if isinstance(obj, FunctionType):
        return f"function {obj.__qualname__}"
    if isinstance(obj, torch.Tensor):
        return "tensor"
    return type(obj).__qualname__


def _counts(members: list[Any], count: Callable[[Any], int]) -> list[int]:
    return [count(m) for m in members]


def is_garbage(found: Walk) -> bool | None:
    """Whether the walk's root is unreachable (True), held (False), or unknown (None).

    ``found`` must be the only holder of the root besides the program's own references
    (the caller keeps nothing else): a sentinel appended to ``members`` calibrates what
    the walk itself adds to every reference count.
    """
    members = found.members
    internal = [0] * len(members)
    for children in found.edges:
        for child in children:
            internal[child] += 1
    members.append(object())  # held by the list alone
    try:
        counts = _counts(members, sys.getrefcount)
    finally:
        members.pop()
    base = counts.pop()  # the sentinel: referenced by the list and this count alone
    held: list[int] = []
    for position, (total, inside) in enumerate(zip(counts, internal)):
        outside = total - base - inside
        if outside < 0:
            return None  # a count the walk cannot explain: no verdict
        if outside > 0:
            held.append(position)
    # everything reachable from an object held from outside is alive
    alive = set(held)
    stack = list(held)
    edges = found.edges
    while stack:
        for child in edges[stack.pop()]:
            if child not in alive:
                alive.add(child)
                stack.append(child)
    return 0 not in alive
