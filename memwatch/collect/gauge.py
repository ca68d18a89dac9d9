"""What ``find_batch_size`` measures: bytes in use, a trial's peak, the capacity.

The search itself (``memwatch.batch_size``) is pure: it sees a ``Gauge`` and a function
that runs one trial. Everything that touches torch is here, on the collection side:

* ``TrackedGauge`` — CPU: the live tensor bytes of a budget's dispatch mode;
* ``CudaGauge`` — CUDA: the caching allocator, through ``cuda.PEAKS``: a trial's peak is
  a ledger window, which keeps the peak across the watch's step ends (they reset the
  allocator's peak) without reaching into the watch;
* ``run_trial`` — one trial in its own frame, catching any out-of-memory failure
  (``torch.OutOfMemoryError`` and the plain ``RuntimeError`` ones, see
  ``oom.is_oom_error``) so that the exception and its traceback die with that frame.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from memwatch.collect import cuda, oom
from memwatch.collect.budget import Budget, active_budget, install_budget
from memwatch.errors import MemwatchError
from memwatch.units import format_size


class Gauge:
    """Bytes in use, the peak of a window, the capacity; the release between trials."""

    capacity: int | None = None
    _level: int | None = None  # bytes in use after the previous release

    def in_use(self) -> int | None:
        return None

    def start_window(self) -> None: ...

    def window_peak(self) -> int | None:
        return None

    def release(self) -> None:
        """Free what the last trial left behind before the next one starts.

        A full ``gc.collect()`` costs 0.1-0.3 s with torch loaded, so it runs only when
        memory is still in use above the level after the previous release (a reference
        cycle kept something) or when that cannot be measured.
        """
        self._drop_frames()
        now = self.in_use()
        if now is None or self._level is None or now > self._level:
            gc.collect()
            now = self.in_use()
        self._level = now
        self._empty_cache()

    def _drop_frames(self) -> None: ...

    def _empty_cache(self) -> None: ...

    def close(self) -> None: ...


class TrackedGauge(Gauge):
    """CPU: the tensor bytes tracked by a budget's dispatch mode.

    ``limit`` imposes a budget on a watch that only tracks, for the search only.
    """

    def __init__(self, budget: Budget, owned: bool, limit: int | None = None) -> None:
        assert budget.tensors is not None
        self.budget = budget
        self.tensors = budget.tensors
        self.owned = owned
        self._previous_limit = self.tensors.budget_bytes
        if limit is not None:
            self.tensors.budget_bytes = limit
        self.capacity = self.tensors.budget_bytes

    def in_use(self) -> int | None:
        return int(self.tensors.live)

    def start_window(self) -> None:
        self.tensors.reset_watermark()

    def window_peak(self) -> int | None:
        return int(self.tensors.watermark)

    def _drop_frames(self) -> None:
        self.tensors.release_raised_frames()

    def close(self) -> None:
        self.tensors.budget_bytes = self._previous_limit
        if self.owned:
            self.budget.uninstall()


class CudaGauge(Gauge):
    """CUDA: the caching allocator of the device the program uses."""

    def __init__(self, capacity: int | None, owned_budget: Budget | None = None) -> None:
        device = cuda.step_device()
        if device is None or not cuda.PEAKS.install():
            raise MemwatchError("find_batch_size: CUDA is not initialised")
        self.device = device
        self.owned_budget = owned_budget
        if capacity is None:
            free, _total = cuda.free_and_total(device)
            reserved = cuda.PEAKS.stats(device).get("reserved_bytes", {}).get("all", {})
            capacity = free + int(reserved.get("current", 0))
        self.capacity = capacity

    def in_use(self) -> int | None:
        return cuda.PEAKS.allocated(self.device)

    def start_window(self) -> None:
        cuda.PEAKS.start_window(self.device)

    def window_peak(self) -> int | None:
        return cuda.PEAKS.window_peak(self.device)

    def _empty_cache(self) -> None:
        cuda.empty_cache()

    def close(self) -> None:
        cuda.PEAKS.end_window(self.device)
        if self.owned_budget is not None:
            self.owned_budget.uninstall()


def open_gauge(budget_bytes: int | None) -> Gauge:
    """Measure with the active watch's tracking when there is one, else set up our own.

    CUDA is measured when the program has initialised it (its model is on the GPU);
    otherwise the search runs on CPU tensor tracking.
    """
    active = active_budget()
    if active is not None and active.budget_bytes is not None:
        if budget_bytes is not None and budget_bytes != active.budget_bytes:
            raise MemwatchError(
                "find_batch_size: the active watch has its own budget "
                f"({format_size(active.budget_bytes)}); pass budget= only without one"
            )
        if active.tensors is not None:
            return TrackedGauge(active, owned=False)
        return CudaGauge(active.capacity_bytes)
    if active is not None and active.tensors is not None:  # a CPU watch that only tracks
        return TrackedGauge(active, owned=False, limit=budget_bytes)
    if cuda.initialized():
        owned = install_budget(budget_bytes) if budget_bytes is not None else None
        return CudaGauge(budget_bytes, owned)
    budget = install_budget(budget_bytes, cpu=True)
    if budget.tensors is None:  # this torch cannot count CPU tensors (said once)
        budget.uninstall()
        raise MemwatchError("find_batch_size: this torch cannot measure memory on CPU")
    return TrackedGauge(budget, owned=True)


def run_trial(step_fn: Callable[[int], object], size: int) -> bool:
    """Run one trial in its own frame; False when it ran out of memory. The failure is
    bound only inside the ``except`` block (Python unbinds it there), so the exception,
    its traceback and every frame it holds die when this frame returns. A failure that is
    not out-of-memory propagates."""
    try:
        step_fn(size)
    except Exception as exc:
        if not oom.is_oom_error(exc):
            raise
        oom.observe_exception(exc)  # plain RuntimeError OOMs are recorded here
        return False
    return True
