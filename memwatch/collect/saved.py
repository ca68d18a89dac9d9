"""Bytes that autograd saves for backward, counted through saved-tensor hooks.

Two pitfalls from the probe shape this module:

* The pack hook receives outputs with their ``grad_fn`` attached; keeping ``t`` itself
  makes a C++/Python cycle that gc cannot break, so we keep ``t.detach()``.
* Installing any saved-tensor hooks switches off autograd's in-place modification
  check, so we record ``t._version`` at pack time and raise the same error at unpack.

Storage is counted once however many views of it are saved. Bytes are filed under the
step that saved them, so ``stale_bytes`` (saved in an earlier step and still alive) is the
direct measure of graphs kept across steps.

What the hooks make is kept out of the cyclic collector (``_untrack``): a step that saves
thousands of tensors would otherwise promote thousands of objects per step towards the
collector's oldest generation, and a full collection (~0.25 s with torch loaded) would
follow every few such steps. In an LSTM unrolled over 300 steps (~9,300 saved tensors)
that was about half of what a counted step cost.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any

import torch

from memwatch.notices import notice


class SavedTensorCounter:
    """Live bytes saved for backward, their in-step peak and their age in steps.

    Unlocked: on CPU, autograd releases saved tensors on the thread that runs backward.
    ``ThreadSafeSavedTensorCounter`` adds a lock for CUDA, where releases may happen on
    autograd's device threads (the lock costs ~26 µs per step on a tiny model).

    A storage's entry is a tuple of two ints, not a list: the collector untracks such a
    tuple at its first young collection, so a step that saves thousands of tensors does
    not promote thousands more objects towards a full collection (~0.2 s with torch
    loaded). A storage saved more than once (a tensor and its views) has its further
    references counted in ``_more``.
    """

    def __init__(self) -> None:
        self._storages: dict[int, tuple[int, int]] = {}  # key -> (nbytes, step)
        self._more: dict[int, int] = {}  # key -> references beyond the first
        self._by_step: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self.step = 0

    def add(self, key: int, nbytes: int) -> None:
        storages = self._storages
        if key in storages:
            self._more[key] = self._more.get(key, 0) + 1
            return
        step = self.step
        storages[key] = (nbytes, step)
        by_step = self._by_step
        by_step[step] = by_step.get(step, 0) + nbytes
        current = self.current = self.current + nbytes
        if current > self.peak:
            self.peak = current

    def drop(self, key: int) -> None:
        more = self._more.get(key)
        if more:
            if more > 1:
                self._more[key] = more - 1
            else:
                del self._more[key]
            return
        entry = self._storages.pop(key, None)
        if entry is None:
            return
        nbytes, step = entry
        self.current -= nbytes
        left = self._by_step.get(step, 0) - nbytes
        if left > 0:
            self._by_step[step] = left
        else:
            self._by_step.pop(step, None)

    @property
    def stale_bytes(self) -> int:
        """Saved bytes that were saved before the current step and are still alive."""
        return self.current - self._by_step.get(self.step, 0)

    def bytes_saved_in(self, step: int) -> int:
        return self._by_step.get(step, 0)

    def new_step(self, step: int) -> None:
        self.step = step
        self.peak = self.current


class ThreadSafeSavedTensorCounter(SavedTensorCounter):
    """The counter for CUDA runs, where ``drop`` may run on autograd's device threads."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def add(self, key: int, nbytes: int) -> None:
        with self._lock:
            super().add(key, nbytes)

    def drop(self, key: int) -> None:
        with self._lock:
            super().drop(key)


def _gc_untrack() -> Callable[[Any], None] | None:
    """CPython's ``PyObject_GC_UnTrack``: the collector stops examining an object (it is
    still freed by reference counting as usual). None where it cannot be reached."""
    try:
        untrack = ctypes.pythonapi.PyObject_GC_UnTrack
        untrack.argtypes = [ctypes.py_object]
        untrack.restype = None
    except Exception:
        return None
    return untrack


#: Called on each ``_Held`` and on the detached tensor it keeps, which can be in no
#: reference cycle: a ``_Held`` refers to a tensor and ints only, and only autograd refers
#: to it; a plain tensor that ``detach()`` made for it has no ``__dict__``, no hooks and no
#: ``grad_fn``. (A tensor subclass's detached copy may carry attributes, so it stays
#: tracked, and so does any tensor the program itself holds.) An untracked object that
#: refers to tracked ones counts as a reference from outside the collector, which keeps
#: them alive while it is: the safe side.
_untrack = _gc_untrack()
_PlainTensor = torch.Tensor


_storage_address = getattr(torch._C, "_storage_address", None)


def _storage_key(tensor: Any) -> tuple[int, int]:
    """(key, bytes) of a saved tensor's storage: the same key for every tensor on one
    storage, a view's included.

    ``untyped_storage()`` makes a Python object that torch then keeps alive with the
    storage: one more object per saved tensor for the collector to follow and promote
    with the graph (30 a step of an RL episode's 108 promoted objects). A tensor that is
    not a view and starts its storage is that storage's owner, whose size is its own
    (``numel × element size``, as torch allocated it); its key is then the storage's
    address, read without any object. A view, or a tensor placed inside a larger
    storage, gets the storage's own size.
    """
    address = _storage_address
    if address is not None and not tensor._is_view() and not tensor.storage_offset():
        return address(tensor), tensor.nelement() * tensor.element_size()
    storage = tensor.untyped_storage()
    if address is not None:
        return address(tensor), storage.nbytes()
    return storage.data_ptr(), storage.nbytes()


class _Held:
    """What autograd keeps instead of the tensor: the detached tensor and its version."""

    __slots__ = ("__weakref__", "counter", "key", "tensor", "version")

    def __init__(
        self, tensor: Any, version: int, key: int | None, counter: SavedTensorCounter | None
    ) -> None:
        self.tensor = tensor
        self.version = version
        self.key = key
        self.counter = counter
        if _untrack is not None:
            _untrack(self)  # out of the collector: see ``_untrack``

    def __del__(self) -> None:
        if self.key is not None:
            try:
                self.counter.drop(self.key)  # type: ignore[union-attr]
            except Exception:
                pass


def _inplace_error(tensor: Any, saved_version: int) -> RuntimeError:
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an "
        f"inplace operation: [{tensor.type()} {list(tensor.shape)}] is at version "
        f"{tensor._version}; expected version {saved_version} instead. Hint: the "
        "operation that modified it is somewhere after the forward that saved it "
        "(this check is performed by memwatch's saved-tensor hooks, which replace "
        "autograd's own)."
    )


#: autograd's private default-hooks stack (what ``torch.autograd.graph.saved_tensors_hooks``
#: uses); looked up at each use, so a torch without it only switches the counting off.
_PUSH = "_push_saved_tensors_default_hooks"
_POP = "_pop_saved_tensors_default_hooks"


class SavedTensorHooks:
    """The pack/unpack pair, pushed on autograd's default-hooks stack while enabled."""

    def __init__(self, counter: SavedTensorCounter) -> None:
        self.counter = counter
        self.enabled = True
        self.packs = 0  # tensors packed while pushed (the sampling's cost estimate)
        self._pushed = False
        self._strided = torch.strided

    def pack(self, tensor: Any) -> Any:
        if not self.enabled:
            # Never keep an output itself: with its grad_fn it would form a cycle
            # (docs/measurements.md §2).
            return tensor.detach() if not tensor.is_leaf else tensor
        self.packs += 1
        try:
            # Only a tensor with a grad_fn must be detached (the cycle above); detaching
            # the others (inputs, parameters) would cost ~0.4 µs each for nothing.
            # ``is_leaf`` tells it without reading ``grad_fn``, which would make the node's
            # Python wrapper: torch keeps that alive with the node, so with a leaked graph.
            if tensor.is_leaf:
                if tensor.requires_grad:
                    # Leaves that require grad are parameters (or user inputs with grad):
                    # memory that exists without the graph, not counted as saved.
                    return _Held(tensor, tensor._version, None, None)
                kept = tensor
            else:
                kept = tensor.detach()
                if _untrack is not None and type(kept) is _PlainTensor:
                    _untrack(kept)
            # (``is_meta`` rather than ``.device.type``: building a device costs ~0.8 µs.)
            if tensor.layout is not self._strided or tensor.is_meta:
                return _Held(kept, tensor._version, None, None)
            key, nbytes = _storage_key(tensor)
            if not nbytes:
                return _Held(kept, tensor._version, None, None)
            counter = self.counter
            held = _Held(kept, tensor._version, key, counter)
        except Exception:
            return tensor.detach() if not tensor.is_leaf else tensor
        try:
            counter.add(key, nbytes)
        except Exception:
            held.key = None  # not counted, so its release must not be either
        return held

    @staticmethod
    def unpack(held: Any) -> Any:
        if type(held) is _Held:
            tensor = held.tensor
            if tensor._version != held.version:
                raise _inplace_error(tensor, held.version)
            return tensor
        return held

    # -- installing -----------------------------------------------------------------------
    def push(self) -> bool:
        """Install the hooks; False (counting off, one notice) on a torch without autograd's
        private default-hooks stack: the program then runs exactly as unwatched."""
        autograd = getattr(torch._C, "_autograd", None)
        push_hooks = getattr(autograd, _PUSH, None)
        if push_hooks is None or getattr(autograd, _POP, None) is None:
            self.enabled = False
            notice(
                f"this torch has no torch._C._autograd.{_PUSH}; autograd's saved tensors "
                "are not measured in this run (the other checks run)"
            )
            return False
        push_hooks(self.pack, self.unpack)
        self._pushed = True
        return True

    def pop(self) -> None:
        if self._pushed:
            getattr(torch._C._autograd, _POP)()
            self._pushed = False

    @property
    def pushed(self) -> bool:
        """Whether autograd calls our pack hook now (saved tensors are being counted)."""
        return self._pushed

    def pause(self) -> bool:
        """Stop counting (sampling: ``sampling.py``): pop our hooks if they are the
        innermost; True when they are off now. Tensors packed so far keep their unpack and
        release; autograd's own in-place check applies to the ones saved from now on."""
        if not self._pushed:
            return True
        if not self.on_top():  # someone's hooks are above ours: leave the stack alone
            return False
        self.pop()
        return True

    def resume(self) -> bool:
        """Count again (push our hooks); True when they are pushed."""
        if self._pushed:
            return True
        if not self.enabled:
            return False
        return self.push()

    def on_top(self) -> bool:
        """Whether our hooks are the innermost pushed ones (popping pops the innermost).

        Without torch's private ``_top_saved_tensors_default_hooks`` nobody's position can
        be seen; ours are then taken to be on top, so that they are popped at the end of
        the watch rather than left installed forever (hooks pushed by ``with
        saved_tensors_hooks(...)`` blocks are popped by their own block first)."""
        top_of = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
        if top_of is None:
            return self._pushed
        try:
            top = top_of(False)
        except Exception:
            return False
        return top is not None and top[0] == self.pack
