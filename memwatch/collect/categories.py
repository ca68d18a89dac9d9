"""Memory by category at each step end: parameters, gradients, optimizer state,
autograd-saved activations and the rest.

Parameters, gradients and optimizer state are enumerable: the optimizers memwatch sees
stepping (a global post-step hook) and the root modules it sees running (the tracker's
root-forward hook) hold them all. Each storage is counted once (tied weights, views,
a parameter both in a module and an optimizer). Activations are the saved-for-backward
bytes at their peak in the step (``StepRecord.saved_peak_bytes``, which never counts
parameters). The rest is the step's peak total minus those, where a total exists: the
CUDA allocator's peak, or the tracked tensor bytes on CPU (``track_tensors``); a CPU run
without one records the counted categories only, labelled ``estimated``.

Walking the parameters of a large model costs (tens of µs per thousand tensors), and they
rarely change, so the counts are refreshed every ``REFRESH_EVERY`` steps after the first
few; gradients are re-counted with them (their storages follow the parameters').
"""

from __future__ import annotations

import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from torch.optim.optimizer import register_optimizer_step_post_hook

from memwatch.collect.device import CudaMemory
from memwatch.collect.holders import storage_of
from memwatch.collect.probe import Probe
from memwatch.records import MemoryCategories, StepRecord, saved_in_step

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost

#: Steps always counted at the start of a run; afterwards every REFRESH_EVERY steps.
ALWAYS_FIRST = 8
REFRESH_EVERY = 16
MAX_MODULES = 8
MAX_OPTIMIZERS = 8


class Counts:
    """Bytes of parameters, gradients and optimizer state, each storage counted once."""

    __slots__ = ("gradients", "optimizer", "parameters")

    def __init__(self) -> None:
        self.parameters = self.gradients = self.optimizer = 0


def count_categories(modules: Any, optimizers: Any, cuda: bool | None) -> Counts:
    """Count the tensors of ``modules`` and ``optimizers``; ``cuda`` keeps only CUDA
    (True) or only non-CUDA (False) tensors, None keeps all."""
    counts = Counts()
    seen: set[int] = set()
    params: dict[int, Any] = {}
    for module in modules:
        for p in module.parameters():
            params[id(p)] = p
        for b in module.buffers():
            if cuda is None or b.is_cuda == cuda:
                key, nbytes = storage_of(b)
                if key not in seen:
                    seen.add(key)
                    counts.parameters += nbytes
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                params[id(p)] = p
    grads = []
    for p in params.values():
        if cuda is not None and p.is_cuda != cuda:
            continue
        key, nbytes = storage_of(p)
        if key not in seen:
            seen.add(key)
            counts.parameters += nbytes
        grad = p.grad
        if grad is not None:
            grads.append(grad)
    for grad in grads:
        key, nbytes = storage_of(grad)
        if key not in seen:
            seen.add(key)
            counts.gradients += nbytes
    for optimizer in optimizers:
        for state in optimizer.state.values():
            if not isinstance(state, dict):
                continue
            for value in state.values():
                if hasattr(value, "untyped_storage") and (cuda is None or value.is_cuda == cuda):
                    key, nbytes = storage_of(value)
                    if key not in seen:
                        seen.add(key)
                        counts.optimizer += nbytes
    return counts


class _WeakIndex:
    """Up to ``limit`` objects, remembered weakly (a rebuilt model or optimizer is freed).

    ``add`` runs at every root forward and optimizer step: an object already known costs a
    dict lookup and a dereference, where a ``WeakSet``'s ``len`` and ``in`` are Python code.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._refs: dict[int, weakref.ref[Any]] = {}

    def add(self, obj: Any) -> None:
        ref = self._refs.get(id(obj))
        if ref is not None and ref() is obj:
            return
        if len(self._refs) >= self._limit:  # drop the dead ones first
            self._refs = {key: r for key, r in self._refs.items() if r() is not None}
            if len(self._refs) >= self._limit:
                return
        try:
            self._refs[id(obj)] = weakref.ref(obj)
        except TypeError:
            pass

    def alive(self) -> list[Any]:
        return [obj for obj in (ref() for ref in self._refs.values()) if obj is not None]

    def __bool__(self) -> bool:
        return any(ref() is not None for ref in self._refs.values())


class CategoriesProbe(Probe):
    """Emits one ``MemoryCategories`` per step through ``tracker.emit_categories``."""

    name = "categories"
    step_ends = "measured"  # activations are the counted saved bytes: nothing to say else

    def __init__(self, refresh_every: int = REFRESH_EVERY) -> None:
        self._modules = _WeakIndex(MAX_MODULES)
        self._optimizers = _WeakIndex(MAX_OPTIMIZERS)
        self._refresh_every = max(1, refresh_every)
        self._counts: Counts | None = None
        self._steps = 0

    def on_start(self, tracker: ProbeHost) -> None:
        tracker.add_handle(register_optimizer_step_post_hook(self._optimizer_post))

    def _optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._optimizers.add(optimizer)

    def on_root_forward_pre(self, tracker: ProbeHost, module: Any, args: Any) -> None:
        self._modules.add(module)

    def on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        if not self._modules and not self._optimizers:
            return
        activations = saved_in_step(record)
        if activations is None:  # saved tensors not counted on this step (sampling)
            return
        total = record.peak_allocated_bytes
        if total is None:
            basis, cuda = "estimated", None
        elif isinstance(tracker.device, CudaMemory):
            basis, cuda = "cuda-allocator", True
        else:
            basis, cuda = "tracked-tensors", False
        self._steps += 1
        if (
            self._counts is None
            or self._steps <= ALWAYS_FIRST
            or self._steps % self._refresh_every == 0
        ):
            self._counts = count_categories(self._modules.alive(), self._optimizers.alive(), cuda)
        counts = self._counts
        other = None
        if total is not None:
            known = counts.parameters + counts.gradients + counts.optimizer + activations
            other = max(0, total - known)
        tracker.emit_categories(
            MemoryCategories(
                step=record.step,
                parameters_bytes=counts.parameters,
                gradients_bytes=counts.gradients,
                optimizer_bytes=counts.optimizer,
                activations_bytes=activations,
                other_bytes=other,
                total_bytes=total,
                basis=basis,
            )
        )
