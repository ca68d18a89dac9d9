"""Probes: evidence gatherers that ride on the tracker's hooks.

A probe looks at one thing (graphs held across steps, forwards without backward, OOM
holders ...) and records what it measures as typed evidence (``memwatch.evidence``) for
the pure detectors in ``memwatch.analysis``. Every method is optional; the tracker calls
only the ones a probe overrides, and a probe that raises is switched off with one notice
(stderr, never a Python warning).

Probes talk to the tracker only through ``ProbeHost``: what it offers them (the step, the
saved-tensor counter, the device, a way to emit, to fail, and to install a hook or patch
that is undone when the watch stops). They never reach into the tracker's or the watch's
private state, so the tracker can change behind this seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from memwatch.collect.device import DeviceMemory
    from memwatch.collect.saved import SavedTensorCounter
    from memwatch.records import Event, Holder, MemoryCategories, StepRecord


class ProbeHost(Protocol):
    """What the tracker offers a probe (the whole of it: see the module docstring)."""

    step: int  # the step being recorded
    off: bool  # True once the watch stopped or in a forked child: do nothing
    saved: SavedTensorCounter  # saved-for-backward bytes: current, peak, stale
    device: DeviceMemory  # the device's memory readings (allocator or tracked tensors)
    analysis_requested: bool  # set True when a measurement should be judged at once
    forward_weight: int  # root forwards the one a probe is handed stands for (thinning)

    @property
    def escalated(self) -> bool:
        """A cheap signal fired lately: every step is measured (collect/sampling.py)."""

    def emit(self, event: Event) -> None:
        """Record a measurement (build it with ``Evidence.event``)."""

    def emit_holders(self, holders: list[Holder]) -> None:
        """Record what holds memory at this step end (the dashboard's holders panel)."""

    def emit_categories(self, categories: MemoryCategories) -> None:
        """Record this step's memory by category (parameters, gradients, optimizer ...)."""

    def fail(self, part: str, exc: BaseException) -> None:
        """Report an internal error once; the caller switches ``part`` off."""

    def add_handle(self, handle: Any) -> None:
        """Keep a hook handle; its ``remove()`` is called when the watch stops."""

    def patch(self, owner: Any, name: str, replacement: Any) -> None:
        """Replace ``owner.name`` until the watch stops (then the original is restored)."""

    def escalate(self, reason: str, memory: bool = False) -> None:
        """Something may be kept: measure every step for a while (collect/sampling.py).
        Emitting evidence does this already (but routine kinds); call it for a cheap
        signal that is not evidence yet. ``memory``: the signal is memory that rose, which
        the first steps of a run (and of its training) do anyway: ignored while they run."""


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
    """Base class: override what you need. ``name`` appears in the warning if it fails.

    ``step_ends`` says which step ends ``on_step_end`` needs (sampling, collect/
    sampling.py): ``"every"`` (the default: counts, orders, its own stride) or
    ``"measured"`` (only steps whose saved tensors were counted from their start, where
    ``record.saved_bytes`` is not None: a probe that reads them and nothing else).
    """

    name = "probe"
    step_ends: ClassVar[Literal["every", "measured"]] = "every"

    def on_start(self, tracker: ProbeHost) -> None:
        """The watch started (hooks are installed)."""

    def on_root_forward_pre(self, tracker: ProbeHost, module: Any, args: Any) -> None:
        """A root module (not called from inside another module) starts its forward."""

    def on_root_forward_post(
        self, tracker: ProbeHost, module: Any, output: Any, saved_delta: int | None
    ) -> None:
        """A root forward finished; ``saved_delta`` is the saved-for-backward bytes it added,
        None when its step did not count saved tensors (sampling, ``sampling.py``)."""

    def on_backward(self, tracker: ProbeHost, call: BackwardCall) -> None:
        """A backward pass finished."""

    def on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        """A step ended; ``frames`` are the user frames at the boundary, innermost first."""

    def on_oom(self, tracker: ProbeHost, info: dict[str, Any], frame: FrameType | None) -> None:
        """An OutOfMemoryError was created (raised) at ``frame``."""

    def on_stop(self, tracker: ProbeHost) -> None:
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
