"""Who holds a given tensor: a bounded forward walk from the program's roots to it.

Given a few target objects (tensors found alive where they should be gone), this walks
breadth-first from the roots a person would name — the variables of the frames on the
stack (the loop, the framework's loop, ``self`` of a method), the globals of user modules
— through what a training program stores tensors in: object attributes
(``engine.state.output``), module children and attributes at any depth
(``model[1].activity``), dict values (``cache['out']``), list and tuple elements
(``history[3]``), closure variables of functions (``last`` in ``make_step``) and bound
methods' owners. It returns the first path to each target, spelled the way the code
would spell it, and what kind of holder the path goes through (``HolderPath.kind``).

Why forward and not ``gc.get_referrers``: a reverse walk costs one traversal of every
object in the process per level (measured ~90 ms per call with Lightning and transformers
imported); the forward walk visits at most ``MAX_NODES`` objects from the roots, so its
cost is bounded whatever the program imported. What it cannot name — a tensor reachable
only through a C object (an ``lru_cache``), or deeper than ``MAX_DEPTH`` — stays unnamed
(``None``), never misnamed.

Collection-side and torch-aware only through ``isinstance`` checks; any probe may use it
(the step-kept probe does; the holder census could: it takes plain objects and returns
plain paths).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import FrameType, FunctionType, MethodType, ModuleType
from typing import Any

import torch
from torch import nn

from memwatch.collect.frames import is_user_file
from memwatch.collect.holders import read_locals

MAX_NODES = 20_000
MAX_DEPTH = 8
MAX_FRAMES = 64
MAX_ITEMS = 64
MAX_ATTRIBUTES = 128

#: nn.Module attributes that never hold user tensors worth naming (parameters and buffers
#: are leaves; hook dictionaries hold functions).
_MODULE_SKIP = frozenset(
    {
        "_parameters",
        "_buffers",
        "_non_persistent_buffers_set",
        "_backward_pre_hooks",
        "_backward_hooks",
        "_is_full_backward_hook",
        "_forward_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_forward_pre_hooks",
        "_forward_pre_hooks_with_kwargs",
        "_state_dict_hooks",
        "_state_dict_pre_hooks",
        "_load_state_dict_pre_hooks",
        "_load_state_dict_post_hooks",
    }
)
_SCALARS = (int, float, complex, bool, str, bytes, bytearray, type(None), range, slice)
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"builtins"}
_MEMWATCH = "memwatch"

#: Edge kinds, from the most to the least "owned by a variable": an ``item`` edge stays
#: inside a container a local names; the others make a holder that outlives the loop body.
ITEM, ATTRIBUTE, CLOSURE = "item", "attribute", "closure"


@dataclass(frozen=True, slots=True)
class StoreHint:
    """Where to look for the statement that stores into the holder (for the source search).

    ``scope`` is "class" (``name`` is a class, ``target`` like ``self.state.output``),
    "function" (``name`` is a function's ``co_name``, ``first_line`` its first line,
    ``target`` a variable) or "file" (a global ``target`` anywhere in the file)."""

    scope: str
    file: str
    name: str
    target: str
    first_line: int = 0


@dataclass(frozen=True, slots=True)
class HolderPath:
    """The first path found from a root to one target.

    ``kind``: "local" (a variable of a frame on the stack holds it directly), "item" (a
    container below such a variable: still the loop's own scoping), "attribute" (an
    object's or module's attribute on the way), "closure" (a function's closure variable
    on the way) or "global" (a module global of a function frame's module)."""

    path: str
    kind: str
    function: str | None
    hints: tuple[StoreHint, ...] = ()

    @property
    def scoping(self) -> bool:
        """Held only by a variable of a running frame (or a container it names): freed
        when the name is rebound, which is ordinary Python scoping."""
        return self.kind in ("local", "item")


class _Node:
    __slots__ = ("depth", "edge", "label", "obj", "parent", "path")

    def __init__(
        self, obj: Any, path: str, depth: int, parent: _Node | None, edge: str, label: str
    ) -> None:
        self.obj = obj
        self.path = path
        self.depth = depth
        self.parent = parent
        self.edge = edge  # "root-local", "root-global", ITEM, ATTRIBUTE, CLOSURE
        self.label = label


def roots_from_stack(start: FrameType | None, limit: int = MAX_FRAMES) -> list[_Node]:
    """The variables of the frames from ``start`` outward (not memwatch's, not torch's),
    then the globals of the user modules those frames run in."""
    roots: list[_Node] = []
    module_dicts: list[tuple[dict[str, Any], str]] = []
    seen_globals: set[int] = set()
    frame = start
    count = 0
    while frame is not None and count < limit:
        count += 1
        code = frame.f_code
        filename = code.co_filename
        package = frame.f_globals.get("__name__", "") or ""
        if package.startswith((_MEMWATCH + ".", "torch.")) or package in (_MEMWATCH, "torch"):
            frame = frame.f_back
            continue
        module_frame = code.co_name == "<module>"
        for name, value in read_locals(frame):
            if not _worth_walking(value):
                continue
            roots.append(_Node(value, name, 0, None, "root-local", code.co_name))
        if not module_frame and is_user_file(filename):
            globals_ = frame.f_globals
            if id(globals_) not in seen_globals:
                seen_globals.add(id(globals_))
                module_dicts.append((globals_, code.co_name))
        frame = frame.f_back
    for globals_, _function in module_dicts:
        try:
            items = list(globals_.items())
        except RuntimeError:
            continue
        for name, value in items[:512]:
            if name.startswith("__") or not _worth_walking(value):
                continue
            if isinstance(value, (type, ModuleType)):
                continue
            roots.append(_Node(value, name, 0, None, "root-global", name))
    return roots


def find_paths(
    targets: Iterable[Any],
    roots: list[_Node],
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
) -> dict[int, HolderPath]:
    """The first path to each target (by ``id``), preferring one that is not scoping.

    A target held both by a local and by an attribute gets the attribute's path: the
    local goes away with the step, the attribute does not."""
    wanted = {id(t) for t in targets}
    found: dict[int, HolderPath] = {}
    scoping: dict[int, HolderPath] = {}
    visited: set[int] = set()
    queue: deque[_Node] = deque(roots)
    visits = 0
    try:
        while queue and visits < max_nodes and len(found) < len(wanted):
            node = queue.popleft()
            obj = node.obj
            key = id(obj)
            if key in wanted:
                if key not in found:
                    holder = _holder(node)
                    if not holder.scoping:
                        found[key] = holder
                    elif key not in scoping:
                        scoping[key] = holder
                continue
            if key in visited:
                continue
            visited.add(key)
            visits += 1
            if node.depth >= max_depth:
                continue
            try:
                children = list(_children(obj, node.path))
            except Exception:  # an exotic object: its contents stay unwalked
                continue
            for edge, label, path, child in children:
                if id(child) in visited and id(child) not in wanted:
                    continue
                queue.append(_Node(child, path, node.depth + 1, node, edge, label))
    finally:
        queue.clear()
    for key, holder in scoping.items():
        found.setdefault(key, holder)
    return found


def _worth_walking(value: Any) -> bool:
    return not isinstance(value, _SCALARS)


def _children(obj: Any, path: str) -> Iterator[tuple[str, str, str, Any]]:
    """(edge kind, label, child path, child) for what ``obj`` holds, bounded."""
    if isinstance(obj, (torch.Tensor, *_SCALARS)):
        return
    if isinstance(obj, torch.optim.Optimizer):
        return  # its state holds leaves (moments), never a step's graph
    if isinstance(obj, nn.Module):
        yield from _module_children(obj, path)
        return
    if isinstance(obj, dict):
        try:
            items = list(obj.items())[:MAX_ITEMS]
        except RuntimeError:
            return
        for key, value in items:
            if _worth_walking(value):
                yield ITEM, _key_text(key), f"{path}[{_key_text(key)}]", value
        return
    if isinstance(obj, (list, tuple, deque)):
        try:
            size = len(obj)
            if size <= MAX_ITEMS:
                indexed = list(enumerate(obj))
            else:
                half = MAX_ITEMS // 2
                head = list(obj)[:half]
                tail = list(obj)[-half:]
                indexed = list(enumerate(head)) + [(size - half + i, v) for i, v in enumerate(tail)]
        except RuntimeError:
            return
        for index, value in indexed:
            if _worth_walking(value):
                yield ITEM, str(index), f"{path}[{index}]", value
        return
    if isinstance(obj, FunctionType):
        closure = obj.__closure__
        if not closure:
            return
        for name, cell in zip(obj.__code__.co_freevars, closure):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if _worth_walking(value) and not isinstance(value, (type, ModuleType)):
                yield CLOSURE, name, name, value
        return
    if isinstance(obj, MethodType):
        owner = obj.__self__
        if _worth_walking(owner):
            yield ATTRIBUTE, "__self__", f"{path}.__self__", owner
        return
    if isinstance(obj, (type, ModuleType)):
        return
    module = type(obj).__module__ or ""
    if module.split(".", 1)[0] in _STDLIB or module.startswith(_MEMWATCH):
        return
    try:
        attributes = vars(obj)
    except TypeError:
        return
    try:
        items = list(attributes.items())[:MAX_ATTRIBUTES]
    except RuntimeError:
        return
    for name, value in items:
        if _worth_walking(value) and not isinstance(value, (type, ModuleType)):
            yield ATTRIBUTE, name, f"{path}.{name}", value


def _module_children(module: nn.Module, path: str) -> Iterator[tuple[str, str, str, Any]]:
    try:
        attributes = list(vars(module).items())[:MAX_ATTRIBUTES]
    except (TypeError, RuntimeError):
        return
    for name, value in attributes:
        if name == "_modules":
            for child_name, child in list(value.items())[:MAX_ITEMS]:
                if child is None:
                    continue
                text = f"[{child_name}]" if child_name.isdigit() else f".{child_name}"
                yield ATTRIBUTE, child_name, f"{path}{text}", child
            continue
        if name in _MODULE_SKIP or not _worth_walking(value):
            continue
        if isinstance(value, (type, ModuleType, FunctionType, MethodType)):
            continue
        yield ATTRIBUTE, name, f"{path}.{name}", value


def _key_text(key: Any) -> str:
    if isinstance(key, (str, int)):
        text = repr(key)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"<{type(key).__name__}>"


def _chain(node: _Node) -> list[_Node]:
    chain: list[_Node] = []
    current: _Node | None = node
    while current is not None:
        chain.append(current)
        current = current.parent
    chain.reverse()
    return chain


def _holder(node: _Node) -> HolderPath:
    chain = _chain(node)
    root = chain[0]
    edges = [n.edge for n in chain[1:]]
    kind = "local" if not edges else "item"
    if root.edge == "root-global":
        kind = "global"
    for edge in edges:
        if edge == CLOSURE:
            kind = "closure"
            break
        if edge == ATTRIBUTE:
            kind = "attribute"
            break
    return HolderPath(node.path, kind, root.label, _hints(chain))


def _hints(chain: list[_Node]) -> tuple[StoreHint, ...]:
    """Where a store into this holder would be written, innermost owner first."""
    hints: list[StoreHint] = []
    last_attribute = max((i for i, n in enumerate(chain) if n.edge == ATTRIBUTE), default=-1)
    if last_attribute > 0:
        attributes = [chain[last_attribute].label]
        for owner_index in range(last_attribute - 1, -1, -1):
            owner = chain[owner_index].obj
            hint = _class_hint(owner, "self." + ".".join(reversed(attributes)))
            if hint is not None:
                hints.append(hint)
            if owner_index == 0 or chain[owner_index].edge != ATTRIBUTE:
                break
            attributes.append(chain[owner_index].label)
    closure = max((i for i, n in enumerate(chain) if n.edge == CLOSURE), default=-1)
    if closure > 0:
        function = chain[closure - 1].obj
        code = getattr(function, "__code__", None)
        if code is not None:
            hints.append(
                StoreHint(
                    "function",
                    code.co_filename,
                    code.co_name,
                    chain[closure].label,
                    code.co_firstlineno,
                )
            )
    return tuple(hints)


def _class_hint(owner: Any, target: str) -> StoreHint | None:
    cls = type(owner)
    module = sys.modules.get(cls.__module__ or "")
    filename = getattr(module, "__file__", None)
    if not filename:
        return None
    return StoreHint("class", filename, cls.__name__, target)
