"""Probes: evidence gatherers that ride on the tracker's hooks.

A probe looks at one thing (graphs held across steps, forwards without backward, OOM
holders ...) and turns what it sees into ``Event`` records for the pure detectors in
``memwatch.analysis``. Every method is optional; the tracker calls only the ones a probe
overrides, and a probe that raises is switched off with one notice (stderr, never a Python warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memwatch.collect.tracker import Tracker
    from memwatch.records import StepRecord


@dataclass(slots=True)
class BackwardCall:
    """One ``backward()``/``autograd.grad()`` call as the tracker saw it."""

    tensors: Any
    retain_graph: bool
    create_graph: bool
    frame: FrameType | None
    saved_before: int
    saved_after: int
    is_grad: bool  # torch.autograd.grad rather than backward


class Probe:
    """Base class: override what you need. ``name`` appears in the warning if it fails."""

    name = "probe"

    def on_start(self, tracker: Tracker) -> None:
        """The watch started (hooks are installed)."""

    def on_root_forward_pre(self, tracker: Tracker, module: Any, args: Any) -> None:
        """A root module (not called from inside another module) starts its forward."""

    def on_root_forward_post(
        self, tracker: Tracker, module: Any, output: Any, saved_delta: int
    ) -> None:
        """A root forward finished; ``saved_delta`` is the saved-for-backward bytes it added."""

    def on_backward(self, tracker: Tracker, call: BackwardCall) -> None:
        """A backward pass finished."""

    def on_step_end(self, tracker: Tracker, record: StepRecord, frames: list[FrameType]) -> None:
        """A step ended; ``frames`` are the user frames at the boundary, innermost first."""

    def on_oom(self, tracker: Tracker, info: dict[str, Any], frame: FrameType | None) -> None:
        """An OutOfMemoryError was created (raised) at ``frame``."""

    def on_stop(self, tracker: Tracker) -> None:
        """The watch is ending; emit what is still pending."""


HOOK_NAMES = (
    "on_start",
    "on_root_forward_pre",
    "on_root_forward_post",
    "on_backward",
    "on_step_end",
    "on_oom",
    "on_stop",
)
