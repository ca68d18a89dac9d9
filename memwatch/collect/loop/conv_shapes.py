"""Evidence for ``cudnn-benchmark-dynamic-shapes``: new conv input shapes under benchmark.

While ``torch.backends.cudnn.benchmark`` is on (read through the C getter, ~0.1 µs), a
root forward of a module containing convolutions with a 2-D or larger input (token ids of
a text CNN too) adds its
shape to that module's set (at most ``MAX_SHAPES``); a step that brought new shapes
records ``ConvInputShapes`` (how many distinct so far, a few examples).
"""

from __future__ import annotations

import sys
import weakref
from typing import TYPE_CHECKING, Any

import torch

from memwatch.collect.frames import first_user_frame
from memwatch.collect.loop.common import (
    Site,
    Thinning,
    call_at,
    location_of,
    module_base,
    site_of,
)
from memwatch.evidence import ConvInputShapes

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost

_CONV = module_base(
    torch.nn.modules.conv,
    "_ConvNd",
    tuple(getattr(torch.nn, f"Conv{kind}{n}d") for kind in ("", "Transpose") for n in (1, 2, 3)),
)
MAX_SHAPES = 1024  # distinct conv input shapes remembered per module


def _cudnn_benchmark_from_module() -> bool:
    return bool(torch.backends.cudnn.benchmark)


#: ``torch.backends.cudnn.benchmark`` is a property costing ~1 µs; the C getter ~0.1 µs.
cudnn_benchmark = getattr(torch._C, "_get_cudnn_benchmark", _cudnn_benchmark_from_module)


class ConvShapesRecorder:
    """Distinct input shapes per convolutional root module; the new ones of a step."""

    def __init__(self) -> None:
        self._has_conv: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._shapes: weakref.WeakKeyDictionary[Any, set[tuple[int, ...]]] = (
            weakref.WeakKeyDictionary()
        )
        self._site: Site | None = None
        self.reset()

    def reset(self) -> None:
        self.new: list[tuple[int, ...]] = []
        self._model = ""
        self._distinct = 0

    def note(self, module: Any, tensor: Any) -> bool:
        """A root forward's input; True when its shape is new for that module."""
        has_conv = self._has_conv.get(module)
        if has_conv is None:
            has_conv = any(isinstance(m, _CONV) for m in module.modules())
            self._has_conv[module] = has_conv
        if not has_conv:
            return False
        shapes = self._shapes.get(module)
        if shapes is None:
            shapes = self._shapes[module] = set()
        shape = tuple(tensor.shape)
        if shape in shapes or len(shapes) >= MAX_SHAPES:
            return False
        shapes.add(shape)
        self.new.append(shape)
        self._model = type(module).__name__
        self._distinct = max(self._distinct, len(shapes))
        if self._site is None:
            self._site = site_of(first_user_frame(sys._getframe(2)))
        return True

    def record(self, tracker: ProbeHost, step: int, thinning: Thinning) -> None:
        if not self.new or not thinning.allow("conv-input-shapes", step):
            return
        call = call_at(self._site)
        evidence = ConvInputShapes(
            new=len(self.new),
            distinct=self._distinct,
            examples=tuple(self.new[:3]),
            model=self._model,
            benchmark=True,
            variable=call.callee if call else None,
        )
        tracker.emit(evidence.event(step, location_of(self._site)))
