"""The process-wide torch hooks and patches a watch installs, and their removal.

What is installed, and what each costs (docs/measurements.md §1):

* global module forward pre/post hooks (~1.3 µs per module call), used only to count
  *root* forwards and to hand them to probes; they return at once while torch.compile
  traces, so compiled models keep a single graph;
* the global optimizer step pre/post hooks (0.1 µs): the post-hook marks step ends;
* ``torch.autograd.backward``/``grad`` wrappers count backward passes and see
  ``retain_graph``;
* a ``GradScaler.update`` wrapper sees steps whose optimizer step the scaler skipped;
* saved-tensor hooks count bytes saved for backward (see ``saved.py``), stepped aside
  for ``torch.func`` (which refuses to run under them);
* ``OutOfMemoryError.__init__`` observes OOMs (see ``oom.py``).

``GlobalHooks`` installs them with the tracker's callbacks (bound methods and closures
called directly by torch: nothing sits between torch and the tracker) and undoes every
one at stop, including the handles and patches probes add through ``ProbeHost``. What the
callbacks do lives in ``tracker.py`` (routing to probes) and ``steps.py`` (step ends).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.modules.module as torch_module
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from memwatch.collect import oom as oom_observer
from memwatch.collect.quiet import hide_global_hook_warning

if TYPE_CHECKING:
    from memwatch.collect.saved import SavedTensorHooks
    from memwatch.collect.steps import StepBoundaries

_is_compiling = torch.compiler.is_compiling


class HookTarget(Protocol):
    """The callbacks the installed hooks call (the tracker)."""

    off: bool  # once True, the patched functions only call the originals

    def forward_pre(self, module: Any, args: Any) -> None: ...
    def forward_post(self, module: Any, args: Any, output: Any) -> None: ...
    def run_backward(
        self,
        original: Callable[..., Any],
        is_grad: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any: ...
    def oom(self, info: dict[str, Any]) -> None: ...


class GlobalHooks:
    """Every hook handle and patch of one watch, removed or restored at stop."""

    def __init__(self) -> None:
        self._handles: list[Any] = []
        self._undo: list[Callable[[], None]] = []
        self._saved_hooks: SavedTensorHooks | None = None

    def install(
        self,
        target: HookTarget,
        steps: StepBoundaries,
        saved_hooks: SavedTensorHooks | None,
    ) -> None:
        """Install the global hooks: ``target``'s callbacks, ``steps``' optimizer hooks."""
        self._handles.append(torch_module.register_module_forward_pre_hook(target.forward_pre))
        self._handles.append(
            torch_module.register_module_forward_hook(target.forward_post, always_call=True)
        )
        self._handles.append(register_optimizer_step_pre_hook(steps.optimizer_pre))
        self._handles.append(register_optimizer_step_post_hook(steps.optimizer_post))
        self._patch_backward(target)
        self._patch_grad_scaler(target, steps)
        if saved_hooks is not None:
            self._saved_hooks = saved_hooks
            saved_hooks.push()
            self._patch_functorch_guard(saved_hooks)
        oom_observer.install(target.oom)
        self._undo.append(oom_observer.uninstall)
        self._undo.append(hide_global_hook_warning())

    def add_handle(self, handle: Any) -> None:
        """Remove this hook handle at stop."""
        self._handles.append(handle)

    def patch(self, owner: Any, name: str, replacement: Any) -> None:
        """Replace ``owner.name``; the original is restored at stop."""
        original = getattr(owner, name)
        setattr(owner, name, replacement)
        self._undo.append(lambda: setattr(owner, name, original))

    def remove(self) -> None:
        """Remove every handle, pop the saved-tensor hooks, restore every patch (newest
        first). Never raises: a restore that fails leaves the others to run."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        saved_hooks = self._saved_hooks
        if saved_hooks is not None:
            if saved_hooks.on_top():
                saved_hooks.pop()
            else:  # someone pushed hooks above ours and left them: keep theirs working
                saved_hooks.enabled = False
        for undo in reversed(self._undo):
            try:
                undo()
            except Exception:
                pass
        self._undo.clear()

    # -- the patches ----------------------------------------------------------------------
    def _patch_backward(self, target: HookTarget) -> None:
        autograd = torch.autograd
        original_backward = autograd.backward
        original_grad = autograd.grad

        @functools.wraps(original_backward)
        def backward(*args: Any, **kwargs: Any) -> Any:
            if target.off or _is_compiling():
                return original_backward(*args, **kwargs)
            return target.run_backward(original_backward, False, args, kwargs)

        @functools.wraps(original_grad)
        def grad(*args: Any, **kwargs: Any) -> Any:
            if target.off or _is_compiling():
                return original_grad(*args, **kwargs)
            return target.run_backward(original_grad, True, args, kwargs)

        self.patch(autograd, "backward", backward)
        self.patch(autograd, "grad", grad)

    def _patch_grad_scaler(self, target: HookTarget, steps: StepBoundaries) -> None:
        scaler_cls = getattr(getattr(torch, "amp", None), "GradScaler", None)
        if scaler_cls is None:
            return
        original_update = scaler_cls.update

        @functools.wraps(original_update)
        def update(scaler: Any, *args: Any, **kwargs: Any) -> Any:
            result = original_update(scaler, *args, **kwargs)
            if not target.off:
                steps.scaler_update()
            return result

        self.patch(scaler_cls, "update", update)

    def _patch_functorch_guard(self, hooks: SavedTensorHooks) -> None:
        """torch.func.grad/vjp refuse to run under saved-tensor hooks: step ours aside."""
        graph = torch.autograd.graph
        original = graph.disable_saved_tensors_hooks

        @contextlib.contextmanager
        def disable_saved_tensors_hooks(error_message: str) -> Iterator[None]:
            if hooks._pushed and hooks.on_top():
                hooks.pop()
                try:
                    with original(error_message):
                        yield
                finally:
                    hooks.push()
            else:
                with original(error_message):
                    yield

        self.patch(graph, "disable_saved_tensors_hooks", disable_saved_tensors_hooks)
