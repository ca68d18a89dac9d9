"""The records that flow from collection to the store, the detectors and every view.

All are frozen dataclasses holding plain values (ints, floats, strings, JSON-able dicts),
so they cross process boundaries through the run file unchanged and detectors can be
tested with hand-made instances. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_RANK: dict[str, int] = {"error": 0, "warning": 1, "info": 2}

#: How a step boundary was found: the optimizer's post-step hook, ``mw.step()``, a
#: GradScaler update that skipped the optimizer, a root-module forward (loops without an
#: optimizer), or the end of the watch closing the last, partial step.
StepBoundary = Literal["optimizer", "manual", "scaler", "forward", "end"]


@dataclass(frozen=True, slots=True)
class Location:
    """A place in the user's source: the line responsible for a measurement."""

    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "function": self.function}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Location | None:
        if not data:
            return None
        return cls(str(data["file"]), int(data["line"]), str(data["function"]))


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What was run, where, and how it ended (``ended_at``/``exit_status`` None while live)."""

    id: str
    script: str
    argv: tuple[str, ...]
    started_at: float
    python: str
    torch: str
    device_type: str  # "cuda" | "cpu"
    device_name: str
    device_total_bytes: int | None
    pid: int
    host: str
    rank: int | None = None
    world_size: int | None = None
    local_rank: int | None = None
    ended_at: float | None = None
    exit_status: int | None = None
    #: The working directory the script ran in: relative source paths in findings and
    #: holders are relative to it (schema 1.1; None in older run files).
    cwd: str | None = None
    #: Set when writing the run file failed (a full disk): the last step it holds, and why.
    recording_stopped_at_step: int | None = None
    recording_stopped_reason: str | None = None
    #: The CUDA device index the run used (None: not CUDA, or CUDA not initialised yet).
    device_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunInfo:
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["argv"] = tuple(kwargs.get("argv") or ())
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """What memory did during one training step.

    Device fields are None where they cannot be known (a CPU run without ``--budget``
    has no allocator statistics: memwatch never logs zeros it did not measure). The
    saved-for-backward fields are None on a step whose saved tensors were not counted
    (sampling, ``memwatch/collect/sampling.py``); ``measured`` says what was measured on
    the step (``MEASURED_*`` bits; None in run files from before schema 1.4: everything).
    """

    step: int
    started_at: float
    duration_s: float
    boundary: str
    allocated_bytes: int | None
    reserved_bytes: int | None
    peak_allocated_bytes: int | None
    device_used_bytes: int | None
    saved_bytes: int | None
    saved_peak_bytes: int | None
    saved_stale_bytes: int | None
    rss_bytes: int | None
    forward_calls: int
    backward_calls: int
    oom_events: int
    measured: int | None = None

    @property
    def saved_measured(self) -> bool:
        """Whether the saved-for-backward bytes were counted on this step."""
        return self.saved_bytes is not None

    @property
    def every_forward_seen(self) -> bool:
        """Whether every module call was watched (else only the known root modules':
        ``forward_calls`` then counts their forwards)."""
        return self.measured is None or bool(self.measured & MEASURED_ALL_MODULES)

    def to_row(self) -> tuple[Any, ...]:
        """The values in ``STEP_COLUMNS`` order (spelled out: this runs every step)."""
        return (
            self.step,
            self.started_at,
            self.duration_s,
            self.boundary,
            self.allocated_bytes,
            self.reserved_bytes,
            self.peak_allocated_bytes,
            self.device_used_bytes,
            self.saved_bytes,
            self.saved_peak_bytes,
            self.saved_stale_bytes,
            self.rss_bytes,
            self.forward_calls,
            self.backward_calls,
            self.oom_events,
            self.measured,
        )


def saved_in_step(step: StepRecord) -> int | None:
    """The most bytes saved for backward alive in ``step`` (its peak or its end), None
    where they were not counted (sampling): never read an unmeasured step as zero."""
    if step.saved_peak_bytes is None or step.saved_bytes is None:
        return None
    return max(step.saved_peak_bytes, step.saved_bytes)


#: ``StepRecord.measured`` bits: saved-for-backward bytes counted from the step's start;
#: every module call watched (global module hooks), not only the known root modules'.
MEASURED_SAVED = 1
MEASURED_ALL_MODULES = 2
MEASURED_EVERYTHING = MEASURED_SAVED | MEASURED_ALL_MODULES

#: Column order of ``StepRecord`` in the run file (also its constructor order).
STEP_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(StepRecord))


@dataclass(frozen=True, slots=True)
class MemoryCategories:
    """What the memory of one step is made of, in bytes.

    ``parameters_bytes`` (parameters and buffers of the modules that ran),
    ``gradients_bytes`` and ``optimizer_bytes`` (optimizer state) are counted at the step
    end, each storage once; ``activations_bytes`` is what autograd saved for backward at
    its peak in the step; ``other_bytes`` is the rest of the step's peak ``total_bytes``
    (inputs, outputs, temporaries, caches). ``basis`` says where the total comes from:
    ``"cuda-allocator"``, ``"tracked-tensors"`` (CPU with tensor tracking), or
    ``"estimated"`` (CPU without a total: ``total_bytes``/``other_bytes`` are None and
    the four counted categories are all that is known).
    """

    step: int
    parameters_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    other_bytes: int | None
    total_bytes: int | None
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Category names in display order, with their ``MemoryCategories`` field.
CATEGORY_FIELDS: tuple[tuple[str, str], ...] = (
    ("parameters", "parameters_bytes"),
    ("gradients", "gradients_bytes"),
    ("optimizer", "optimizer_bytes"),
    ("activations", "activations_bytes"),
    ("other", "other_bytes"),
)


@dataclass(frozen=True, slots=True)
class Event:
    """Something a collector observed, with the numbers a detector needs.

    ``kind`` names the observation (``oom``, ``graph-holder``, ``backward`` ...); ``data``
    holds JSON-able values only. Detectors read events; they never reach into torch.
    """

    kind: str
    step: int
    time: float
    data: Mapping[str, Any] = field(default_factory=dict)
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class Holder:
    """A name that holds tensor memory at a step end (``loss``, ``model.cache``)."""

    step: int
    name: str
    bytes: int
    tensors: int
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A diagnosed problem: what, where, how much, and what to change.

    Its ``to_dict`` is a finding of the ``memwatch.report/1`` JSON (README, docs/contracts.md).
    """

    kind: str
    severity: Severity
    title: str
    detail: str
    first_step: int | None
    fix: str
    location: Location | None = None
    variable: str | None = None
    bytes: int | None = None
    growth_per_step_bytes: int | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    rank: int | None = None

    @property
    def key(self) -> str:
        """Identity for de-duplication: one finding per kind, variable and place."""
        where = f"{self.location.file}:{self.location.line}" if self.location else "-"
        return f"{self.kind}|{self.variable or '-'}|{where}|{self.rank}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "detail": self.detail,
            "first_step": self.first_step,
            "location": self.location.to_dict() if self.location else None,
            "variable": self.variable,
            "bytes": self.bytes,
            "growth_per_step_bytes": self.growth_per_step_bytes,
            "fix": self.fix,
            "evidence": dict(self.evidence),
        }
        if self.rank is not None:
            data["rank"] = self.rank
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            kind=str(data["kind"]),
            severity=data["severity"],
            title=str(data["title"]),
            detail=str(data.get("detail", "")),
            first_step=data.get("first_step"),
            fix=str(data.get("fix", "")),
            location=Location.from_dict(data.get("location")),
            variable=data.get("variable"),
            bytes=data.get("bytes"),
            growth_per_step_bytes=data.get("growth_per_step_bytes"),
            evidence=dict(data.get("evidence") or {}),
            rank=data.get("rank"),
        )


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Most severe first, then earliest step: the order every view shows."""
    return sorted(
        findings,
        key=lambda f: (SEVERITY_RANK.get(f.severity, 9), f.first_step or 0, f.kind),
    )
