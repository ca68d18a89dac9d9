"""Evidence for ``stale-optimizer-params``: an optimizer stepping parameters that no module
run any more holds (a model replaced, reloaded or re-created after the optimizer was built).

Installed besides the tracker's hooks (``ProbeHost.add_handle``/``patch``, undone at stop):
a global optimizer step pre-hook, and a wrapper around ``Optimizer.__init__`` that only
remembers the user line that built each optimizer. ``note_forward`` keeps the root
modules seen running (weak references, at most ``MAX_ROOTS``) with the last step each ran.

*When* to measure (not a verdict): at an optimizer's ``CHECK_EVERY``-th step (every
``CHECK_EVERY_LATER``-th after ``CHECK_EVERY_UNTIL`` steps), if root forwards ran since its
previous check. The check runs in the pre-hook, where the gradients of the step are still
there (a ``zero_grad`` after ``step()`` has not run yet). It collects the ids of the
parameters of the root modules that ran since the previous check (their submodules
included, so a branch used every other step counts as used) and walks the optimizer's
``param_groups``: a parameter that requires grad and is in none of them is an orphan (the
modules' parameter ids are cached, walked again every ``REFRESH_IDS_EVERY`` checks, before
any orphan is reported, and when the first or last trainable parameter of the optimizer
has no gradient at its step: layers swapped in place, ``setattr(model, "fc1", smaller)``,
keep the module but not its parameters, and the cache would still hold the old ones). A
``StaleOptimizerParams`` is recorded when the optimizer has orphans (and at every later
check of an optimizer that had some, so the detector sees them go away), with the orphans'
bytes, their gradients' and their optimizer state's, and whether they had gradients
(``None``, or all zeros in a sample of ``ZERO_SAMPLE`` of them): the detector decides.
"""

from __future__ import annotations

import functools
import sys
import weakref
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from memwatch.collect.frames import first_user_frame
from memwatch.collect.holders import storage_of
from memwatch.collect.loop.common import call_at, location_of, site_of
from memwatch.evidence import StaleOptimizerParams

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost

_is_compiling = torch.compiler.is_compiling

#: An optimizer is checked at every CHECK_EVERY-th of its steps up to CHECK_EVERY_UNTIL,
#: then every CHECK_EVERY_LATER-th: a *when to measure* rule (cost), not a verdict.
CHECK_EVERY = 4
CHECK_EVERY_UNTIL = 64
CHECK_EVERY_LATER = 16
MAX_ROOTS = 32  # root modules remembered (weakly); the oldest-run is dropped beyond
MAX_OPTIMIZERS = 16  # optimizers followed
ZERO_SAMPLE = 4  # orphan gradients read to see whether they are all zeros
REFRESH_IDS_EVERY = 16  # checks between fresh walks of the modules' parameters


class _Followed:
    """What is remembered about one optimizer (no strong reference to it)."""

    __slots__ = ("checks", "serial", "stale_seen", "steps")

    def __init__(self, serial: int) -> None:
        self.serial = serial
        self.steps = 0
        self.checks = -1  # tracker step of the previous check (-1: none yet)
        self.stale_seen = False


class StaleParamsRecorder:
    """Compares an optimizer's parameters with those of the modules that ran (module doc)."""

    def __init__(self) -> None:
        self._tracker: ProbeHost | None = None
        self._roots: dict[int, tuple[weakref.ref[Any], int]] = {}
        self._followed: weakref.WeakKeyDictionary[Any, _Followed] = weakref.WeakKeyDictionary()
        self._created: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
        self._serials = 0
        self._last_forward_step = -1
        self._ids: dict[int, frozenset[int]] = {}  # id(root module) -> its parameters' ids
        self._checks = 0

    def install(self, tracker: ProbeHost) -> None:
        self._tracker = tracker
        tracker.add_handle(register_optimizer_step_pre_hook(self._optimizer_pre))
        init = torch.optim.Optimizer.__init__
        tracker.patch(torch.optim.Optimizer, "__init__", self._wrap_init(init))

    def _wrap_init(self, original: Any) -> Any:
        recorder = self

        @functools.wraps(original)
        def __init__(optimizer: Any, *args: Any, **kwargs: Any) -> None:
            original(optimizer, *args, **kwargs)
            recorder._note_created(optimizer, sys._getframe(1))

        return __init__

    def _note_created(self, optimizer: Any, frame: Any) -> None:
        tracker = self._tracker
        if tracker is None or tracker.off or len(self._created) >= 4 * MAX_OPTIMIZERS:
            return
        try:
            if optimizer in self._created:  # a subclass's __init__ calling super(): first wins
                return
            location = location_of(site_of(first_user_frame(frame)))
            if location is not None:
                self._created[optimizer] = location.to_dict()
        except Exception as exc:
            tracker.fail("the loop probe (optimizer creation)", exc)

    def note_forward(self, module: Any, step: int) -> None:
        """A root module starts its forward at ``step`` (one dict update)."""
        self._last_forward_step = step
        key = id(module)
        entry = self._roots.get(key)
        if entry is not None and entry[0]() is module:
            self._roots[key] = (entry[0], step)
            return
        try:
            ref = weakref.ref(module)
        except TypeError:
            return
        self._ids.pop(key, None)  # a new module (perhaps at a dead one's id)
        if len(self._roots) >= MAX_ROOTS:
            self._roots = {k: v for k, v in self._roots.items() if v[0]() is not None}
            if len(self._roots) >= MAX_ROOTS:
                oldest = min(self._roots, key=lambda k: self._roots[k][1])
                del self._roots[oldest]
            self._ids = {k: v for k, v in self._ids.items() if k in self._roots}
        self._roots[key] = (ref, step)

    def _optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        tracker = self._tracker
        if tracker is None or tracker.off or _is_compiling():
            return
        try:
            followed = self._followed.get(optimizer)
            if followed is None:
                if len(self._followed) >= MAX_OPTIMIZERS:
                    return
                self._serials += 1
                followed = _Followed(self._serials)
                self._followed[optimizer] = followed
            followed.steps += 1
            every = CHECK_EVERY if followed.steps <= CHECK_EVERY_UNTIL else CHECK_EVERY_LATER
            if followed.steps % every or self._last_forward_step < followed.checks:
                return
            self._check(tracker, optimizer, followed)
        except Exception as exc:
            tracker.fail("the loop probe (optimizer parameters)", exc)

    def _used(self, since: int, fresh: bool) -> tuple[set[int], list[str]]:
        """Ids of the parameters of the root modules run at ``since`` or later, and their
        class names. Each module's ids are cached (a model's parameter walk costs ~3 µs per
        submodule); ``fresh`` walks them again."""
        used: set[int] = set()
        modules: list[str] = []
        for key, (ref, step) in list(self._roots.items()):
            module = ref()
            if module is None or step < since:
                continue
            modules.append(type(module).__name__)
            ids = None if fresh else self._ids.get(key)
            if ids is None:
                ids = frozenset(id(p) for p in module.parameters())
                self._ids[key] = ids
            used.update(ids)
        return used, modules

    @staticmethod
    def _all_used(optimizer: Any, used: set[int]) -> bool:
        return all(
            id(p) in used or not p.requires_grad
            for group in optimizer.param_groups
            for p in group["params"]
        )

    def _check(self, tracker: ProbeHost, optimizer: Any, followed: _Followed) -> None:
        since = followed.checks
        followed.checks = tracker.step
        self._checks += 1
        fresh = self._checks % REFRESH_IDS_EVERY == 0 or _ends_without_grad(optimizer)
        used, modules = self._used(since, fresh)
        if not modules:
            return
        if not fresh and not self._all_used(optimizer, used):
            used, modules = self._used(since, True)  # orphans: make sure with a fresh walk
        params = orphans = 0
        with_grad: list[Any] = []
        orphan_params: list[Any] = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                if not p.requires_grad:
                    continue  # frozen: never stepped, whoever holds it
                params += 1
                if id(p) in used:
                    continue
                orphans += 1
                orphan_params.append(p)
                if p.grad is not None:
                    with_grad.append(p.grad)
        if not orphans and not followed.stale_seen:
            return
        followed.stale_seen = followed.stale_seen or orphans > 0
        sample = with_grad[:ZERO_SAMPLE]
        zero = sum(1 for g in sample if not bool(g.any()))
        seen: set[int] = set()
        orphan_bytes = _bytes(orphan_params, seen)
        grad_bytes = _bytes(with_grad, seen)
        state: list[Any] = []
        for p in orphan_params:
            values = optimizer.state.get(p)
            if isinstance(values, dict):
                state.extend(v for v in values.values() if isinstance(v, torch.Tensor))
        state_bytes = _bytes(state, seen)
        frame = first_user_frame(sys._getframe(1))
        site = site_of(frame)
        call = call_at(site, "step")
        evidence = StaleOptimizerParams(
            optimizer=type(optimizer).__name__,
            optimizer_serial=followed.serial,
            variable=call.receiver if call else None,
            params=params,
            orphans=orphans,
            orphans_with_grad=len(with_grad),
            orphan_grads_checked=len(sample),
            orphan_grads_zero=zero,
            orphan_bytes=orphan_bytes,
            grad_bytes=grad_bytes,
            state_bytes=state_bytes,
            forwarded=len(modules),
            modules=tuple(sorted(set(modules)))[:8],
            created_at=self._created.get(optimizer),
        )
        tracker.emit(evidence.event(tracker.step, location_of(site)))


def _ends_without_grad(optimizer: Any) -> bool:
    """Whether the optimizer's first or last parameter requires grad but has none at its
    step (two attribute reads each): a cue that the modules' parameters may have changed."""
    groups = optimizer.param_groups
    if not groups or not groups[0]["params"] or not groups[-1]["params"]:
        return False
    ends = (groups[0]["params"][0], groups[-1]["params"][-1])
    return any(p.requires_grad and p.grad is None for p in ends)


def _bytes(tensors: list[Any], seen: set[int]) -> int:
    """Storage bytes of ``tensors`` not already in ``seen`` (each storage once)."""
    total = 0
    for t in tensors:
        key, nbytes = storage_of(t)
        if key not in seen:
            seen.add(key)
            total += nbytes
    return total
