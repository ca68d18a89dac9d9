"""Evidence for ``hooks-accumulate``: hooks registered at one line of the user's code that
stay registered, counted per line and per module (or tensor) over the steps.

How, cheaply: the ``register_*hook`` functions users call (``nn.Module``'s forward,
forward-pre and backward hooks, ``Tensor.register_hook`` and
``register_post_accumulate_grad_hook``, and the global ``register_module_*`` hooks) are
wrapped through ``ProbeHost.patch``. A registration costs one walk to the user's frame
and keeps what the returned ``RemovableHandle`` knows: a weak reference to the hooks dict
and the hook's id (never the handle's owner, the hook, or a frame). Calls from memwatch
itself and from inside ``torch.compile`` are not followed.

*When* to measure (not a verdict): every ``CHECK_EVERY`` steps (and at the stop), for
each registration line seen, the ids still in their dicts are counted (a removed handle,
or a module/tensor that died, drops out), grouped by the dict that holds them; a
``LiveHooks`` is recorded when a line's count changed since the last record. At most
``MAX_FOLLOWED`` live registrations are followed per line (``capped`` says more were
made). The module's path (``model.layers.0``) is looked up in the step end's user frames
only when the evidence is recorded.
"""

from __future__ import annotations

import functools
import os
import sys
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch

from memwatch.collect.frames import first_user_frame
from memwatch.collect.loop.common import Site, Thinning, call_at, location_of, site_of
from memwatch.collect.probe import Probe
from memwatch.evidence import LiveHooks

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost
    from memwatch.records import StepRecord

_is_compiling = torch.compiler.is_compiling
_MEMWATCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")

CHECK_EVERY = 4  # steps between two counts of the live hooks
MAX_FOLLOWED = 1024  # live registrations followed per line
MAX_SITES = 256  # registration lines followed
PATH_SEARCH_MODULES = 4096  # submodules looked at when naming the most-hooked module

_MODULE_METHODS = (
    "register_forward_pre_hook",
    "register_forward_hook",
    "register_full_backward_pre_hook",
    "register_full_backward_hook",
    "register_backward_hook",
)
_TENSOR_METHODS = ("register_hook", "register_post_accumulate_grad_hook")
_GLOBAL_FUNCTIONS = (
    "register_module_forward_pre_hook",
    "register_module_forward_hook",
    "register_module_full_backward_pre_hook",
    "register_module_full_backward_hook",
    "register_module_backward_hook",
)


class _Site:
    """One registration line: its live registrations and what was last recorded."""

    __slots__ = ("capped", "entries", "method", "recorded", "registered", "site")

    def __init__(self, site: Site | None, method: str) -> None:
        self.site = site
        self.method = method
        self.registered = 0
        self.capped = False
        # (weak ref to the hooks dict, hook id, weak ref to the owner or None)
        self.entries: list[tuple[Any, int, Any]] = []
        self.recorded = 0  # live count last recorded


class HookSitesProbe(Probe):
    """Follows hook registrations per user line (module doc)."""

    name = "hooks"

    def __init__(self) -> None:
        self._tracker: ProbeHost | None = None
        self._sites: dict[tuple[Any, int, str], _Site] = {}
        self._thinning = Thinning()
        self._failed = False  # a registration raised in here: stop following (one notice)

    def on_start(self, tracker: ProbeHost) -> None:
        self._tracker = tracker
        for name in _MODULE_METHODS:
            original = getattr(torch.nn.Module, name, None)
            if original is not None:
                tracker.patch(torch.nn.Module, name, self._wrap(original, name, True))
        for name in _TENSOR_METHODS:
            original = getattr(torch.Tensor, name, None)
            if original is not None:
                tracker.patch(torch.Tensor, name, self._wrap(original, name, True))
        module_py = torch.nn.modules.module
        for name in _GLOBAL_FUNCTIONS:
            original = getattr(module_py, name, None)
            if original is None:
                continue
            wrapped = self._wrap(original, name, False)
            tracker.patch(module_py, name, wrapped)
            for namespace in (torch.nn.modules, torch.nn.modules.module):
                if namespace is not module_py and getattr(namespace, name, None) is original:
                    tracker.patch(namespace, name, wrapped)

    def _wrap(self, original: Any, method: str, bound: bool) -> Any:
        probe = self

        @functools.wraps(original)
        def register(*args: Any, **kwargs: Any) -> Any:
            handle = original(*args, **kwargs)
            owner = args[0] if bound and args else None
            probe._note(method, owner, handle, sys._getframe(1))
            return handle

        return register

    def _note(self, method: str, owner: Any, handle: Any, caller: FrameType) -> None:
        tracker = self._tracker
        if tracker is None or tracker.off or self._failed:
            return
        try:
            if caller.f_code.co_filename.startswith(_MEMWATCH_DIR) or _is_compiling():
                return
            ref = getattr(handle, "hooks_dict_ref", None)
            hook_id = getattr(handle, "id", None)
            if ref is None or not isinstance(hook_id, int):
                return
            frame = first_user_frame(caller)
            if frame is None:
                return
            key = (frame.f_code, frame.f_lineno, method)
            site = self._sites.get(key)
            if site is None:
                if len(self._sites) >= MAX_SITES:
                    return
                site = self._sites[key] = _Site(site_of(frame), method)
            site.registered += 1
            if len(site.entries) >= MAX_FOLLOWED:
                self._prune(site)
                if len(site.entries) >= MAX_FOLLOWED:
                    site.capped = True
                    return
            try:
                owner_ref = weakref.ref(owner) if owner is not None else None
            except TypeError:
                owner_ref = None
            site.entries.append((ref, hook_id, owner_ref))
        except Exception as exc:
            self._failed = True
            tracker.fail("the hooks probe (registration)", exc)

    @staticmethod
    def _prune(site: _Site) -> dict[int, tuple[int, Any]]:
        """Drop the removed or dead registrations; the live ones per hooks dict."""
        live: list[tuple[Any, int, Any]] = []
        per_dict: dict[int, tuple[int, Any]] = {}
        for entry in site.entries:
            hooks = entry[0]()
            if hooks is None or entry[1] not in hooks:
                continue
            live.append(entry)
            count, owner = per_dict.get(id(hooks), (0, entry[2]))
            per_dict[id(hooks)] = (count + 1, owner)
        site.entries = live
        return per_dict

    def on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        if self._sites and record.step % CHECK_EVERY == 0:
            self._check(tracker, record.step, frames)

    def on_stop(self, tracker: ProbeHost) -> None:
        if self._sites:
            self._check(tracker, tracker.step, [])

    def _check(self, tracker: ProbeHost, step: int, frames: list[FrameType]) -> None:
        for site in list(self._sites.values()):
            per_dict = self._prune(site)
            live = len(site.entries)
            if live == site.recorded:
                continue
            site.recorded = live
            if not self._thinning.allow(f"live-hooks/{site.method}", step):
                continue
            most, owner_ref = max(per_dict.values(), key=lambda v: v[0], default=(0, None))
            owner = owner_ref() if owner_ref is not None else None
            call = call_at(site.site, site.method)
            evidence = LiveHooks(
                method=site.method,
                live=live,
                registered=site.registered,
                owners=len(per_dict),
                max_per_owner=most,
                owner_type=type(owner).__name__ if owner is not None else None,
                owner_path=_path_of(owner, frames) if owner is not None and most > 1 else None,
                variable=call.receiver if call is not None else None,
                capped=site.capped,
            )
            tracker.emit(evidence.event(step, location_of(site.site)))


def _path_of(target: Any, frames: list[FrameType]) -> str | None:
    """``model.layers.0``: where ``target`` sits below a module named in the user's frames
    (their locals, and the attributes of their ``self``), or None."""
    if not isinstance(target, torch.nn.Module):
        return None
    roots: list[tuple[str, Any]] = []
    for frame in frames:
        for name, value in list(frame.f_locals.items()):
            if isinstance(value, torch.nn.Module):
                roots.append((name, value))
            elif name == "self":
                attrs = getattr(value, "__dict__", None)
                if isinstance(attrs, dict):
                    roots.extend(
                        (f"self.{k}", v)
                        for k, v in list(attrs.items())
                        if isinstance(v, torch.nn.Module)
                    )
    for name, root in roots:
        if root is target:
            return name
        for i, (sub_name, sub) in enumerate(root.named_modules()):
            if i >= PATH_SEARCH_MODULES:
                break
            if sub is target:
                return f"{name}.{sub_name}"
    return None
