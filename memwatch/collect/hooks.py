"""The process-wide torch hooks and patches a watch installs, and their removal.

What is installed, and what each costs (docs/measurements.md §1):

* module forward pre/post hooks, used only to count *root* forwards and to hand them to
  probes (``ModuleHooks``): global hooks (~1.3 µs per module call, and every module call
  leaves torch's fast path) while the root modules are being discovered, then a wrapper on
  the known root modules only, so a step of hundreds of tiny forwards costs little more
  than one of a single forward; they return at once while torch.compile traces, so
  compiled models keep a single graph;
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
import weakref
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
    def new_module(self) -> None: ...
    def call_root(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...


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
        modules: ModuleHooks,
    ) -> None:
        """Install the global hooks: ``target``'s callbacks, ``steps``' optimizer hooks;
        ``modules`` installs (and later swaps) the module forward hooks."""
        modules.install()
        self._undo.append(modules.remove)
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


#: Whether the global module hooks give way to the roots' wrappers after discovery. A
#: module built or copied after the last discovery (swa_utils.AveragedModel made at the
#: end, ``copy.deepcopy(model)`` for an EMA, a model loaded with ``torch.load``) is not
#: wrapped: its construction (torch's module, parameter and buffer registration hooks) or
#: its unpickling (``Module.__setstate__``, which deep copies use) starts a rediscovery at
#: once, before it can be called; so does an ``eval()``/``train()`` that changes a module's
#: mode (a phase that may call a child at the top level). A module without parameters,
#: buffers or children built late (``nn.ReLU()``) is found by the periodic rediscovery.
ROOT_ONLY = True
#: Steps with global module hooks at the start of a run and at each rediscovery: every
#: module called at the top level in them is a known root module from then on.
DISCOVERY_STEPS = 4
#: Steps between two rediscoveries (a model built later, a child module called directly,
#: a validation model run every few steps). A new optimizer, a backward in a step that ran
#: no known root, and any escalation of the sampling (``sampling.py``) rediscover at once.
#: A periodic rediscovery that finds no new root doubles the wait, up to
#: ``REDISCOVER_EVERY_MAX`` (one that finds one resets it): its steps run every module call
#: through the global hooks, ~1.5 % of a run of small forwards at a wait of 64.
REDISCOVER_EVERY = 64
REDISCOVER_EVERY_MAX = 1024
#: More root modules than this (a module built every step): the global hooks stay.
MAX_ROOTS = 16
#: More modules than this in the roots' trees: the global hooks stay.
MAX_WRAPPED = 4096

_module_call = torch.nn.Module.__call__


class ModuleHooks:
    """The forward hooks that see root forwards: global while discovering, then a wrapper
    on each known root module.

    The wrapper is set as the module's ``_compiled_call_impl`` (what ``Module.__call__``
    calls instead of ``_call_impl`` when set): one instance attribute that torch leaves
    out of pickles and deep copies (``Module.__getstate__``), so ``torch.save(model)`` and
    ``copy.deepcopy(model)`` never see memwatch, children keep torch's fast path, and it
    holds the module only weakly (a rebuilt model is freed as before). A module that
    overrides ``__call__`` or is compiled in place cannot be wrapped: the global hooks then
    stay. Switches happen between forwards only (``pending`` until the outermost forward
    returns), so a forward's pre and post callbacks always come from the same hooks.
    """

    def __init__(self, target: HookTarget) -> None:
        self._target = target
        self._global: list[Any] = []
        self._signals: list[Any] = []  # registration hooks that say a module was built
        # nn.Module methods we replaced: name -> (ours, the original)
        self._patched: dict[str, tuple[Any, Any]] = {}
        # what our patches tell; emptied at stop, so a patch left in someone else's chain
        # keeps nothing of the watch alive and only calls the original
        self._signal_target: list[HookTarget | None] = [target]
        self._roots: weakref.WeakSet[Any] = weakref.WeakSet()
        self._too_many = False
        self._wrapped: list[tuple[weakref.ref[Any], _RootCall]] = []
        self.discovering = True
        self.pending: bool | None = None  # the mode to switch to (True: discovering)
        self.switches = 0
        self._left = DISCOVERY_STEPS
        self._since = 0
        self._every = REDISCOVER_EVERY  # steps between periodic rediscoveries (backs off)
        self._periodic = False  # the discovery running was started by the period
        self._newly_wrapped = 0  # roots the last switch to wrappers wrapped

    # -- what the tracker reports ---------------------------------------------------------
    def install(self) -> None:
        self._install_global()
        self._install_new_module_signals()

    def note_root(self, module: Any) -> None:
        """A root forward seen by the global hooks: remember the module."""
        if module in self._roots:
            return
        if len(self._roots) >= MAX_ROOTS:
            self._too_many = True
            return
        try:
            self._roots.add(module)
        except TypeError:
            self._too_many = True

    def step_end(self) -> None:
        """A step ended: count down the discovery, or toward the next rediscovery."""
        if self.discovering:
            self._left -= 1
            if self._left <= 0 and ROOT_ONLY and self._roots and not self._too_many:
                self.pending = False
        else:
            self._since += 1
            if self._since >= self._every:
                self.rediscover()
                self._periodic = True

    def rediscover(self) -> None:
        """Watch every module call again for ``DISCOVERY_STEPS`` steps."""
        self._left = DISCOVERY_STEPS
        self._since = 0
        self._periodic = False
        if not self.discovering:
            self.pending = True
        elif self.pending is False:
            self.pending = None

    def apply(self) -> None:
        """Switch to the pending mode (called between forwards only)."""
        pending, self.pending = self.pending, None
        if pending is None or pending == self.discovering:
            return
        if pending:
            self._install_global()
            self.discovering = True
            self.switches += 1
            return
        if not self._wrap_roots():
            self._left = REDISCOVER_EVERY  # cannot wrap: keep the global hooks a while
            return
        if self._periodic:  # nothing new found: wait longer; something found: as before
            found = self._newly_wrapped > 0
            self._every = REDISCOVER_EVERY if found else min(2 * self._every, REDISCOVER_EVERY_MAX)
        self._periodic = False
        self._remove_global()
        self.discovering = False
        self._too_many = False
        self._roots = weakref.WeakSet()
        self.switches += 1

    def remove(self) -> None:
        """Remove the global hooks, the new-module signals and every wrapper in place."""
        self._remove_global()
        for handle in self._signals:
            handle.remove()
        self._signals.clear()
        self._signal_target[0] = None  # our patches pass straight through from now on
        for name, (ours, original) in self._patched.items():
            # restore only what is still ours: a patch installed on top of ours since
            # (Dynamo tags modules through Module.__setstate__) is left in place
            if torch.nn.Module.__dict__.get(name) is ours:
                setattr(torch.nn.Module, name, original)
        self._patched.clear()
        for ref, call in self._wrapped:
            module = ref()
            if module is not None and module.__dict__.get("_compiled_call_impl") is call:
                try:
                    del module.__dict__["_compiled_call_impl"]
                except Exception:
                    pass
        self._wrapped.clear()

    # -- the hooks --------------------------------------------------------------------------
    def _install_global(self) -> None:
        if self._global:
            return
        target = self._target
        self._global.append(torch_module.register_module_forward_pre_hook(target.forward_pre))
        self._global.append(
            torch_module.register_module_forward_hook(target.forward_post, always_call=True)
        )

    def _install_new_module_signals(self) -> None:
        """Learn that a module was built or copied (not called: that costs nothing per
        forward), so a model made after discovery is watched from its first call."""
        cell = self._signal_target
        hooks = weakref.ref(self)

        def signal() -> None:
            target, modules = cell[0], hooks()
            if target is None or modules is None or target.off:
                return
            if not modules.discovering or modules.pending is False:
                target.new_module()

        def registered(module: Any, name: str, value: Any) -> None:
            # fires for each parameter, buffer and child a module registers (construction,
            # or a setattr later); must return None: a value returned replaces the object.
            # A buffer set to None (a loss module's weight) makes nothing to watch.
            if value is not None:
                signal()

        self._signals.append(torch_module.register_module_module_registration_hook(registered))
        self._signals.append(torch_module.register_module_parameter_registration_hook(registered))
        self._signals.append(torch_module.register_module_buffer_registration_hook(registered))
        original = torch.nn.Module.__setstate__

        @functools.wraps(original)
        def __setstate__(module: Any, state: Any) -> None:
            original(module, state)  # a deep copy, copy.copy, pickle.load or torch.load
            _drop_foreign_wrapper(module)
            signal()

        original_replicate = torch.nn.Module._replicate_for_data_parallel

        @functools.wraps(original_replicate)
        def _replicate_for_data_parallel(module: Any) -> Any:
            replica = original_replicate(module)  # a copy of the module's __dict__
            _drop_foreign_wrapper(replica)
            return replica

        original_train = torch.nn.Module.train

        @functools.wraps(original_train)
        def train(module: Any, mode: bool = True) -> Any:
            # ``eval()`` calls ``train(False)``, and each child's ``train`` is called too
            changed = getattr(module, "training", mode) != mode
            result = original_train(module, mode)
            if changed:
                signal()
            return result

        for name, ours, replaced in (
            ("__setstate__", __setstate__, original),
            ("_replicate_for_data_parallel", _replicate_for_data_parallel, original_replicate),
            ("train", train, original_train),
        ):
            self._patched[name] = (ours, replaced)
            setattr(torch.nn.Module, name, ours)

    def _remove_global(self) -> None:
        for handle in self._global:
            handle.remove()
        self._global.clear()

    def _wrap_roots(self) -> bool:
        """Wrap every known root (alive) that is not wrapped yet; False if one cannot be."""
        done = {id(m) for m in (ref() for ref, _ in self._wrapped) if m is not None}
        # The roots only: their children keep torch's own call path (a wrapper on each
        # child costs ~1 µs per call, 800 calls in a step of 200 small forwards). A child
        # called at the top level (``model.decoder(x)`` from a decoding helper) is a root
        # once a discovery saw it; an ``eval()``/``train()`` that changes a module's mode
        # (a decoding or validation phase starting) starts a discovery at once.
        todo: list[Any] = []
        for module in list(self._roots):
            if id(module) not in done:
                done.add(id(module))
                todo.append(module)
        if len(todo) + len(self._wrapped) > MAX_WRAPPED:
            return False
        for module in todo:
            if (
                type(module).__call__ is not _module_call
                or module.__dict__.get("_compiled_call_impl") is not None
            ):
                return False
        for module in todo:
            call = _RootCall(weakref.ref(module), self, self._target)
            module.__dict__["_compiled_call_impl"] = call
            self._wrapped.append((weakref.ref(module), call))
        self._wrapped = [(ref, call) for ref, call in self._wrapped if ref() is not None]
        self._newly_wrapped = len(todo)
        return True


def _drop_foreign_wrapper(module: Any) -> None:
    """A module made from a copy of another's ``__dict__`` (a replica, an unpickled copy)
    must not keep that module's wrapper: it would run the other module's forward."""
    call = module.__dict__.get("_compiled_call_impl")
    if type(call) is _RootCall and call.ref() is not module:
        del module.__dict__["_compiled_call_impl"]  # torch's own default (None) shows


class _RootCall:
    """``module._compiled_call_impl``: the tracker's pre/post callbacks around
    ``_call_impl`` (the forward post callback also runs when the forward raises, as the
    global ``always_call`` hook does).

    An object rather than a closure so that it pickles and deep-copies as ``None``,
    torch's own value of ``_compiled_call_impl``: ``Module.__getstate__`` leaves the
    attribute out, but modules with their own ``__getstate__`` (``nn.LSTM``/``nn.GRU``
    through ``RNNBase``) keep it, and ``torch.save(model)`` would fail on a closure (the
    zoo's word_language_model case did) or write memwatch into the checkpoint.
    """

    __slots__ = ("hooks", "ref", "target")

    def __init__(self, ref: weakref.ref[Any], hooks: ModuleHooks, target: HookTarget) -> None:
        self.ref = ref
        self.hooks = hooks
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (type(None), ())  # rebuilt as None: the copy or the loaded model is plain

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The module being called is the watched one: the copies of a module's __dict__
        # that would keep this wrapper (DataParallel replicas, ``copy.copy`` and unpickling
        # of modules whose ``__getstate__`` keeps it) drop it as they are made
        # (``_drop_foreign_wrapper``), so no frame is read here (reading the caller's
        # ``self`` cost ~2 µs per forward: 2 % of a 900-forward LSTM unroll).
        module: Any = self.ref()
        if _is_compiling():  # Dynamo traces this call: nothing it cannot trace
            return module._call_impl(*args, **kwargs)
        if module is None:  # cannot happen while the module calls us; be safe anyway
            raise RuntimeError("memwatch: a watched module vanished during its call")
        if self.hooks.discovering:
            return module._call_impl(*args, **kwargs)
        return self.target.call_root(module, args, kwargs)
