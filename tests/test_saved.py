"""The saved-tensor counter and its pack/unpack hooks (memwatch/collect/saved.py)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import torch

from memwatch.collect.saved import SavedTensorCounter, SavedTensorHooks


def _hooks() -> SavedTensorHooks:
    return SavedTensorHooks(SavedTensorCounter())


def test_a_storage_saved_through_a_tensor_and_its_view_counts_once_until_both_go() -> None:
    # GIVEN the hooks, and a result whose storage autograd saves twice (itself, a view)
    hooks = _hooks()
    x = torch.randn(64, 64, requires_grad=True)
    y = x * 2
    nbytes = y.untyped_storage().nbytes()
    # WHEN both are packed
    whole = hooks.pack(y)
    view = hooks.pack(y[:8])
    # THEN the storage counts once
    assert hooks.counter.current == nbytes
    # WHEN autograd releases one of them
    del whole
    # THEN the storage still counts (the other still holds it) ...
    assert hooks.counter.current == nbytes
    # ... and when it releases the other, nothing is left
    del view
    assert hooks.counter.current == 0


def test_saved_bytes_are_filed_under_the_step_that_saved_them() -> None:
    # GIVEN one tensor saved in step 0 and kept, and one saved in step 1
    hooks = _hooks()
    x = torch.randn(32, 32, requires_grad=True)
    old = hooks.pack(x * 2)
    hooks.counter.new_step(1)
    new = hooks.pack(x * 3)
    size = (x * 2).untyped_storage().nbytes()
    # THEN the one from step 0 is stale, the one from step 1 is not
    assert hooks.counter.stale_bytes == size
    assert hooks.counter.bytes_saved_in(0) == size
    assert hooks.counter.bytes_saved_in(1) == size
    # WHEN the old one is released
    del old
    # THEN nothing stale is left
    assert hooks.counter.stale_bytes == 0
    del new


def test_parameters_are_kept_but_not_counted_and_inputs_are_counted() -> None:
    # GIVEN a parameter and a plain input
    hooks = _hooks()
    weight = torch.nn.Parameter(torch.randn(16, 16))
    batch = torch.randn(16, 16)
    # WHEN both are packed
    held = [hooks.pack(weight), hooks.pack(batch)]
    # THEN only the input counts, and unpacking gives each back as it is
    assert hooks.counter.current == batch.untyped_storage().nbytes()
    assert hooks.unpack(held[0]) is weight
    assert hooks.unpack(held[1]) is batch


@pytest.mark.parametrize("saved", ["parameter", "input", "result"])
def test_an_in_place_change_after_packing_raises_at_unpack(saved: str) -> None:
    # GIVEN a tensor packed for backward (a parameter, an input, an intermediate result)
    hooks = _hooks()
    x = torch.randn(8, requires_grad=True)
    tensor = {
        "parameter": torch.nn.Parameter(torch.randn(8)),
        "input": torch.randn(8),
        "result": x * 2,
    }[saved]
    held = hooks.pack(tensor)
    # WHEN it is changed in place before backward
    with torch.no_grad():
        tensor.add_(1)
    # THEN unpacking raises autograd's error, as autograd would without the hooks
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        hooks.unpack(held)


def test_the_counter_adds_no_object_the_collector_keeps_following_per_storage() -> None:
    # GIVEN the hooks with many results packed (an unrolled RNN saves thousands a step)
    hooks = _hooks()
    x = torch.randn(4, requires_grad=True)
    held = [hooks.pack(x * float(i)) for i in range(200)]
    # WHEN the collector has looked at the young objects once
    gc.collect(0)
    # THEN the counter's per-storage entries are no longer tracked by it: they are not
    #      promoted towards a full collection (~0.2 s with torch loaded) with the graph
    entries = list(hooks.counter._storages.values())
    assert len(entries) == 200
    assert not any(gc.is_tracked(entry) for entry in entries)
    del held
    assert hooks.counter.current == 0


def test_what_the_hooks_make_for_autograd_is_not_followed_by_the_collector() -> None:
    # GIVEN the hooks and a graph of results and parameters (an unrolled RNN saves
    #       thousands of them per step: each object the hooks make and the collector
    #       follows is promoted with the graph towards a full collection, ~0.25 s)
    hooks = _hooks()
    w = torch.randn(8, requires_grad=True)
    x = torch.randn(8)
    # WHEN a result, a parameter and an input are packed
    result, param, batch = hooks.pack(w * 2.0), hooks.pack(w), hooks.pack(x)
    # THEN neither what autograd keeps nor the tensor detached for it is tracked ...
    assert not any(gc.is_tracked(held) for held in (result, param, batch))
    assert not gc.is_tracked(result.tensor)
    # ... but the program's own tensors keep their place in the collector
    assert batch.tensor is x and gc.is_tracked(x)
    assert param.tensor is w and gc.is_tracked(w)
    # AND releasing them still frees what they held and counts it
    assert hooks.counter.current == 2 * x.untyped_storage().nbytes()
    del result, param, batch
    assert hooks.counter.current == 0


def test_a_graph_counted_by_the_hooks_is_freed_without_a_collection() -> None:
    # GIVEN the hooks pushed while a small model builds its graph, with the collector off
    hooks = _hooks()
    kept: list[weakref.ref[Any]] = []  # what autograd keeps, and the copies detached for it

    def pack(tensor: torch.Tensor) -> Any:
        held = hooks.pack(tensor)
        kept.append(weakref.ref(held))
        if held.tensor is not tensor:
            kept.append(weakref.ref(held.tensor))
        return held

    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, hooks.unpack):
            out = model(torch.randn(4, 16)).sum()
        assert hooks.counter.current > 0
        assert not any(gc.is_tracked(ref()) for ref in kept)
        # WHEN backward frees the graph and the program drops the result
        out.backward()
        del out
        # THEN reference counting alone has freed what autograd kept and the tensors
        #      detached for it (an untracked object in a cycle would never be freed)
        assert hooks.counter.current == 0
        assert all(ref() is None for ref in kept)
    finally:
        if was_enabled:
            gc.enable()


def _storage_objects() -> int:
    """How many of torch's Python storage objects the collector follows (torch keeps the
    one ``untyped_storage()`` makes alive with its storage)."""
    return sum(1 for obj in gc.get_objects() if type(obj) is torch.UntypedStorage)


def test_counting_a_result_makes_no_python_object_for_its_storage() -> None:
    # GIVEN the hooks and a result that owns its storage (an activation)
    hooks = _hooks()
    x = torch.randn(32, 32, requires_grad=True)
    y = x * 2
    before = _storage_objects()
    # WHEN it is packed and counted
    held = hooks.pack(y)
    # THEN its bytes are counted ...
    assert hooks.counter.current == y.nelement() * y.element_size()
    # ... without a Python storage object for the collector to follow with the graph
    assert _storage_objects() == before
    # AND a view of it still counts its storage once, with the storage's own size
    view = hooks.pack(y[4:8])
    assert hooks.counter.current == y.untyped_storage().nbytes()
    del held, view
    assert hooks.counter.current == 0
