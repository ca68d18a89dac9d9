"""holder_path: the bounded walk that names who holds a tensor, as the code spells it."""

from __future__ import annotations

import sys
import weakref
from typing import Any

import torch
from torch import nn

from memwatch.collect.holder_path import find_paths, roots_from_stack

HELD_GLOBALLY: dict[str, Any] = {}


class _Box:
    def __init__(self) -> None:
        self.inner: Any = None


def _make_step(tensor: torch.Tensor) -> Any:
    last = tensor

    def step() -> Any:
        return last

    return step


def _paths(*refs: weakref.ref[Any]) -> dict[int, Any]:
    """Paths to the referents (weak references: the caller's own names would hold them)."""
    return find_paths([r() for r in refs], roots_from_stack(sys._getframe(1)))


def test_attributes_items_and_module_children_are_spelled_like_code() -> None:
    # GIVEN tensors held by an attribute of an attribute, a dict value, a list element and
    # a submodule attribute
    a, b, c, d = (torch.zeros(2) for _ in range(4))
    box = _Box()
    box.inner = _Box()
    box.inner.inner = (a, 1)
    cache = {"out": b}
    history = [None, [c]]
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    model[1][0].last = d
    refs = [weakref.ref(t) for t in (a, b, c, d)]
    del a, b, c, d  # only the holders keep them
    # WHEN the walk looks for them
    paths = _paths(*refs)
    a, b, c, d = (r() for r in refs)
    assert cache["out"] is b and history[1][0] is c  # both were alive during the walk
    # THEN each path reads like the code that reaches it, with the holder's kind
    assert (paths[id(a)].path, paths[id(a)].kind) == ("box.inner.inner[0]", "attribute")
    assert (paths[id(b)].path, paths[id(b)].kind) == ("cache['out']", "item")
    assert (paths[id(c)].path, paths[id(c)].kind) == ("history[1][0]", "item")
    assert (paths[id(d)].path, paths[id(d)].kind) == ("model[1][0].last", "attribute")
    assert paths[id(b)].scoping and not paths[id(a)].scoping


def test_a_closure_variable_and_a_global_are_named() -> None:
    # GIVEN a tensor kept in a closure cell and one in a module global
    kept, glob = torch.zeros(2), torch.zeros(3)
    step = _make_step(kept)
    HELD_GLOBALLY["x"] = glob
    refs = weakref.ref(kept), weakref.ref(glob)
    del kept, glob
    try:
        paths = _paths(*refs)
        # THEN the closure variable and the global's item are the holders
        closure = next(p for p in paths.values() if p.kind == "closure")
        assert closure.path == "last"
        assert paths[id(refs[1]())].path == "HELD_GLOBALLY['x']"
        assert paths[id(refs[1]())].kind == "global"
        assert step() is refs[0]()
    finally:
        HELD_GLOBALLY.clear()


def test_a_holder_outside_the_locals_wins_over_a_local_name() -> None:
    # GIVEN a tensor both bound to a local and stored as an attribute
    out = torch.zeros(2)
    box = _Box()
    box.inner = out
    # THEN the attribute is reported (the local goes away with the step, it does not)
    path = _paths(weakref.ref(out))[id(out)]
    assert (path.path, path.kind) == ("box.inner", "attribute")


def test_the_walk_is_bounded() -> None:
    # GIVEN a tensor at the end of a long chain of objects
    head = node = _Box()
    for _ in range(50):
        node.inner = _Box()
        node = node.inner
    node.inner = torch.zeros(1)
    del node
    target = head
    for _ in range(51):
        target = target.inner
    ref = weakref.ref(target)
    del target
    # THEN a walk limited in depth gives up instead of walking on (unnamed, not misnamed)
    paths = find_paths([ref()], roots_from_stack(sys._getframe(0)), max_depth=8)
    assert id(ref()) not in paths
    # AND with room enough it names the whole chain
    deep = find_paths([ref()], roots_from_stack(sys._getframe(0)), max_depth=60)
    assert deep[id(ref())].path == "head" + ".inner" * 51
