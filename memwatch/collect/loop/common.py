"""What the loop recorders share: user sites without frames, thinning, module facts.

Frames are never kept (they hold the user's tensors): a recorder keeps a ``Site``,
``(code, lasti, line)``, and reads the source (``memwatch.source.calls``) only when it
records evidence.
"""

from __future__ import annotations

import weakref
from types import CodeType, FrameType
from typing import Any

import torch

from memwatch.collect.frames import display_path
from memwatch.records import Location
from memwatch.source.calls import CallSite, call_site_at


def module_base(module: Any, private: str, public: tuple[type, ...]) -> tuple[type, ...]:
    """The private base class ``module.private`` of torch.nn layers (``_ConvNd``, ``_Loss``,
    ...) for ``isinstance``, or, on a torch without it, the public classes it stands for."""
    found = getattr(module, private, None)
    return (found,) if isinstance(found, type) else public


_nn = torch.nn
_STOCHASTIC = module_base(
    _nn.modules.dropout,
    "_DropoutNd",
    (_nn.Dropout, _nn.Dropout1d, _nn.Dropout2d, _nn.Dropout3d, _nn.AlphaDropout),
) + module_base(
    _nn.modules.batchnorm, "_BatchNorm", (_nn.BatchNorm1d, _nn.BatchNorm2d, _nn.BatchNorm3d)
)

MAX_PENDING = 256  # forwards remembered between two backwards (an eval pass can be long)
EMIT_FREELY = 256  # events of one kind emitted before thinning to one step in 16
#: ... for an observation a loop makes the same at every step, healthy or not (the
#: single-sample forwards of every RL episode): the detector needs two, the rest is cost.
ROUTINE_EMIT_FREELY = 16

Site = tuple[CodeType, int, int]  # (code, lasti, line) of a user frame: no locals kept


def site_of(frame: FrameType | None) -> Site | None:
    if frame is None:
        return None
    return (frame.f_code, frame.f_lasti, frame.f_lineno)


def location_of(site: Site | None) -> Location | None:
    if site is None:
        return None
    code, _, line = site
    return Location(display_path(code.co_filename), line, code.co_name)


def call_at(site: Site | None, method: str | None = None) -> CallSite | None:
    if site is None:
        return None
    return call_site_at(site[0], site[1], site[2], method)


class Thinning:
    """After ``free`` events of a kind (``EMIT_FREELY``), one step in 16: a bug that
    repeats every step cannot flood the run file (a *when to record* rule, not a verdict)."""

    def __init__(self) -> None:
        self._emitted: dict[str, int] = {}

    def allow(self, kind: str, step: int, free: int = EMIT_FREELY) -> bool:
        count = self._emitted.get(kind, 0)
        if count >= free and step % 16:
            return False
        self._emitted[kind] = count + 1
        return True


class StochasticModules:
    """Dropout/batch-norm submodules of a root module (walked once per module)."""

    def __init__(self) -> None:
        self._found: weakref.WeakKeyDictionary[Any, tuple[tuple[str, Any], ...]] = (
            weakref.WeakKeyDictionary()
        )

    def of(self, module: Any) -> tuple[tuple[str, Any], ...]:
        try:
            return self._found[module]
        except KeyError:
            pass
        except TypeError:  # not weak-referenceable/hashable: walk every time (rare)
            return tuple(
                (f"{n} ({type(m).__name__})", m)
                for n, m in module.named_modules()
                if isinstance(m, _STOCHASTIC)
            )
        found = tuple(
            (f"{name} ({type(m).__name__})" if name else type(m).__name__, m)
            for name, m in module.named_modules()
            if isinstance(m, _STOCHASTIC)
        )
        self._found[module] = found
        return found

    def training(self, module: Any) -> tuple[str, ...]:
        """The names of those submodules still in training mode."""
        return tuple(name for name, m in self.of(module) if m.training)


class LoopOrder:
    """A clock over backward calls: when the last one ran (-1: never)."""

    __slots__ = ("last_backward", "tick")

    def __init__(self) -> None:
        self.tick = 0
        self.last_backward = -1

    def backward(self) -> None:
        self.tick += 1
        self.last_backward = self.tick
