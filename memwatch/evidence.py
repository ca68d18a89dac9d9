"""Evidence: what a probe measured, typed, versioned and stored in the run file.

A probe measures; a detector decides. Between them lies the run file, which
``memwatch report`` reads again later, possibly with a newer memwatch. So evidence is a
file format: one frozen dataclass per evidence kind below, built by a probe in
``memwatch/collect/`` and read back by the detectors in ``memwatch/analysis/detectors/``.

* ``Evidence.event(step, location)`` wraps a measurement in the ``Event`` envelope the
  store writes (``kind``, ``step``, ``time``, ``location``, JSON ``data``).
* ``AnalysisInput.observed(Kind)`` reads the events of that kind back as
  ``Observed[Kind]`` (step, time, location and the typed evidence), so a detector never
  spells a JSON key: a renamed field is a type error, not a finding switched off.
* ``from_data`` is lenient about *missing* keys (each field has a default, so hand-made
  test events and older files stay readable) and strict about *bad* values: a run file is
  untrusted input, and a string where a number belongs raises ``EvidenceError``.

The run file records ``EVIDENCE_VERSION`` in its ``meta`` table. Files written before the
version existed read as version 0; ``upgrade`` turns their events into the current layout
(tests/test_evidence.py covers it). A file from a newer memwatch is refused with one line.

Adding an evidence kind: a frozen dataclass here with a ``KIND`` and defaults for every
field, listed in ``EVIDENCE_KINDS``; a probe that emits ``MyKind(...).event(step, loc)``;
a detector that declares it consumes ``MyKind`` (docs/architecture.md has the recipe).
"""

from __future__ import annotations

import dataclasses
import time as _time
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from memwatch.errors import RunFileError
from memwatch.records import Event, Location

#: The layout of event data this memwatch writes. Version 0: files written before the
#: version was recorded (the same keys, but ``holder-growth`` carried a ``state`` verdict).
EVIDENCE_VERSION = 1

E = TypeVar("E", bound="Evidence")


class EvidenceError(ValueError):
    """An event whose data cannot be read as its evidence kind (a bad value in the file)."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """Base of every evidence kind: ``KIND`` names the events it is stored as."""

    KIND: ClassVar[str] = ""

    def to_data(self) -> dict[str, Any]:
        """The JSON-able dict stored as the event's data (nested evidence as dicts)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def event(self, step: int, location: Location | None = None, at: float | None = None) -> Event:
        """This measurement as the ``Event`` the tracker sends to the store and detectors."""
        return Event(self.KIND, step, _time.time() if at is None else at, self.to_data(), location)

    @classmethod
    def from_data(cls: type[E], data: Mapping[str, Any]) -> E:
        """Read stored data back; missing keys take the field default, bad values raise."""
        if not isinstance(data, Mapping):
            raise EvidenceError(f"{cls.KIND} event data is not an object")
        kwargs: dict[str, Any] = {}
        for name, hint in _hints(cls).items():
            if name in data and data[name] is not None:
                try:
                    kwargs[name] = _coerce(hint, data[name])
                except (TypeError, ValueError) as exc:
                    raise EvidenceError(
                        f"{cls.KIND} event has a bad {name!r} value ({exc})"
                    ) from None
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Observed(Generic[E]):
    """One stored measurement as a detector sees it: when, where, and what."""

    step: int
    time: float
    location: Location | None
    evidence: E

    @classmethod
    def of(cls, kind: type[E], event: Event) -> Observed[E]:
        return cls(event.step, event.time, event.location, kind.from_data(event.data))


# -- the evidence kinds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphAccumulation(Evidence):
    """A name alive across steps whose autograd graph reaches into earlier steps.

    Gathered by ``collect/graph_probe.py`` when this step's graph of the name contains
    last step's root (a hit), at the first hits and then every few steps; whether the
    hits prove a leak is the detector's call. Version 0 files recorded only proven ones
    (with a ``confirmed_step``); ``upgrade`` marks them so.
    """

    KIND: ClassVar[str] = "graph-accumulation"
    variable: str | None = None
    holder: str | None = None
    scope: str | None = None
    owner_class: str | None = None
    container: bool = False
    is_tuple: bool = False
    length: int = 0
    nodes_per_step: int = 0
    nodes_per_step_capped: bool = False
    nodes: int = 0
    nodes_capped: bool = False
    first_step: int | None = None
    hit_streak: int = 0  # consecutive steps whose graph reached last step's root
    history_steps: int = 0  # earlier steps one walk of the graph reached
    steps_seen: int = 0  # steps whose graph reached the previous one, in all
    tensor_bytes: int = 0
    tensor_growth_per_step: int = 0
    node_bytes_estimate: int = 0
    saved_stale_bytes: int = 0
    frame_function: str | None = None
    frame_line: int | None = None
    frame_file: str | None = None
    statement: str | None = None
    pattern: str | None = None
    operands: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HolderGrowth(Evidence):
    """A named holder's tensor bytes over recent scanned steps (``collect/growth_probe.py``).

    Measurements only: whether the holder is still growing, stopped or was reset is the
    ``memory-growth`` detector's call (version 0 files stored that verdict as ``state``).
    """

    KIND: ClassVar[str] = "holder-growth"
    holder: str = ""
    scope: str | None = None
    owner_class: str | None = None
    kind: str = "tensor"  # "tensor" | "container"
    bytes: int = 0
    max_bytes: int = 0
    tensors: int = 0
    length: int = 0
    estimated: bool = False
    first_step: int | None = None
    start_bytes: int = 0
    growth_per_step_bytes: int = 0
    last_growth_step: int | None = None
    same_container: bool = True
    samples: tuple[tuple[int, int], ...] = ()
    statement: str | None = None
    pattern: str | None = None
    operands: tuple[str, ...] = ()
    #: growth comes in steps every ``period_steps`` steps (evaluation, checkpoint, logging
    #: intervals); 0 = every step. ``rises``: how many rises were seen since it started.
    period_steps: int = 0
    rises: int = 0
    #: of ``bytes``, the host arrays (numpy) rather than torch tensors
    host_bytes: int = 0
    #: found by the census (``collect/census.py``) rather than the every-step scan
    census: bool = False
    #: the largest size before the holder was last emptied or rebuilt (0: never was): a
    #: per-epoch list filling up again is bounded by it
    cycle_peak_bytes: int = 0


@dataclass(frozen=True, slots=True)
class CensusTotals(Evidence):
    """What one census (``collect/census.py``) found reachable from the program's roots.

    Recorded each time the census runs (when a cheap signal fires, and sampled): the
    tensor and host-array bytes reachable from frames, user module globals, closures and
    object attributes, and how many items the containers among them hold. A process whose
    RSS climbs while none of these do is the allocator keeping freed memory, not a leak
    of reachable data (``host-memory-growth`` reads it).
    """

    KIND: ClassVar[str] = "census-totals"
    tensor_bytes: int = 0
    host_tensor_bytes: int = 0
    array_bytes: int = 0
    container_items: int = 0
    holders: int = 0
    nodes: int = 0
    capped: bool = False
    rss_bytes: int | None = None
    cost_ms: float = 0.0
    trigger: str = ""


@dataclass(frozen=True, slots=True)
class LingeringName(Evidence):
    """One variable that still holds the previous step's tensors, and their bytes."""

    name: str = ""
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class LingeringLocals(Evidence):
    """Variables still holding last step's tensors at a step's first forward.

    Gathered by ``collect/lingering_probe.py`` whenever any such name holds bytes; how
    many bytes matter is the ``lingering-step-locals`` detector's call.
    """

    KIND: ClassVar[str] = "lingering-locals"
    names: tuple[LingeringName, ...] = ()
    bytes: int = 0
    saved_peak_bytes: int = 0
    peak_allocated_bytes: int | None = None
    function: str | None = None
    file: str | None = None
    forward_line: int | None = None
    tensors_from_step: int | None = None
    occurrences: int = 0
    #: autograd-saved bytes from earlier steps still alive at that forward (the graph the
    #: lingering names may keep; 0 when backward freed it and only outputs linger)
    stale_saved_bytes: int = 0


@dataclass(frozen=True, slots=True)
class GraphKeptAcrossStep(Evidence):
    """Last step's autograd history still alive at the next step's first forward.

    Gathered by ``collect/step_kept_probe.py``. ``cause`` says how it was seen: "held" (a
    tensor with a ``grad_fn`` from the previous step reached through an attribute, a
    closure, a global or a container below one: ``holder`` is that path) or
    "retain-graph" (the step's last ``backward``/``autograd.grad`` passed
    ``retain_graph=True`` and saved bytes of the previous step are still alive:
    ``holder`` is the tensor it was called on). How many bytes matter is the
    ``graph-kept-across-step`` detector's call.
    """

    KIND: ClassVar[str] = "graph-kept-across-step"
    cause: str = "held"
    holder: str | None = None
    #: "attribute", "closure", "global", "item" (a container below a local) or "local"
    holder_kind: str | None = None
    tensors: int = 0
    #: storage bytes of the kept tensors (their own data, counted once)
    tensor_bytes: int = 0
    #: autograd-saved bytes of earlier steps still alive at that forward
    stale_saved_bytes: int = 0
    #: the previous step's saved-for-backward peak (what the kept bytes add to)
    saved_peak_bytes: int = 0
    grad_fn: str | None = None
    tensors_from_step: int | None = None
    occurrences: int = 0


@dataclass(frozen=True, slots=True)
class RetainGraphBackward(Evidence):
    """A step's ``backward(retain_graph=True)`` calls, with the saved bytes around them."""

    KIND: ClassVar[str] = "retain-graph-backward"
    calls: int = 1
    saved_before: int = 0
    saved_after: int = 0
    stale_bytes: int = 0
    old_bytes: int = 0
    saved_bytes: int = 0
    function: str = "backward"
    variable: str | None = None


@dataclass(frozen=True, slots=True)
class ForwardWithoutBackward(Evidence):
    """Root forwards of a step whose graphs no backward used (``collect/loop/forwards.py``)."""

    KIND: ClassVar[str] = "forward-without-backward"
    forwards: int = 0
    eval_mode_forwards: int = 0
    bytes: int = 0
    peak_alive_bytes: int = 0
    saved_at_end: int = 0
    stale_at_end: int = 0
    step_backwards: int = 0
    step_forwards: int = 0
    boundary: str | None = None
    model: str | None = None
    variable: str | None = None
    callee: str | None = None
    # Of ``forwards``, those whose saved tensors were counted: the byte fields above are
    # theirs (sampling counts saved tensors on some steps only; 0: no bytes known).
    # Files from before it: None, all of them.
    counted_forwards: int | None = None

    @property
    def measured_forwards(self) -> int:
        """The forwards the byte fields stand for."""
        return self.forwards if self.counted_forwards is None else self.counted_forwards


@dataclass(frozen=True, slots=True)
class EvalPassTrainMode(Evidence):
    """Evaluation forwards while dropout/batch-norm submodules were in training mode."""

    KIND: ClassVar[str] = "eval-pass-train-mode"
    how: str = ""  # "no_grad": grad disabled; "no_backward": graph never used
    forwards: int = 0
    training_modules: tuple[str, ...] = ()
    training_module_count: int = 0
    step_forwards: int = 0
    step_backwards: int = 1
    model: str | None = None
    variable: str | None = None
    # The root module's own mode: False when the user called eval() on it and switched
    # some layers back to train (Monte Carlo dropout). Files from before it: True.
    model_training: bool = True
    # True when train mode was set on the model (``model.train()``) while grad was disabled:
    # a no-grad pass meant to run in training mode (``swa_utils.update_bn`` recomputing
    # BatchNorm statistics, Monte Carlo dropout). Files from before it: False.
    train_set_without_grad: bool = False
    eval_module_count: int = 0  # dropout/batch-norm submodules in eval mode meanwhile


@dataclass(frozen=True, slots=True)
class MicrobatchBackward(Evidence):
    """One backward that used several forwards' graphs summed into one loss."""

    KIND: ClassVar[str] = "microbatch-backward"
    forwards: int = 0
    branches: int = 0
    forward_bytes: int = 0
    graphs_bytes: int = 0
    saved_before: int = 0
    backwards: int = 1
    variable: str | None = None


@dataclass(frozen=True, slots=True)
class GradReset(Evidence):
    """A reset of an optimizer's gradients discarded backward passes no optimizer had used.

    Recorded at that optimizer's next step (or, for a reset inside ``step(closure)`` after
    the closure's backward, at the end of that step): ``passes_discarded`` backward passes
    wrote gradients into its parameters and were reset (``resets`` times; the location is
    the first reset) before any optimizer stepped them; ``passes_kept`` passes reached the
    step. ``grads_none`` of ``params_checked`` sampled parameters had no gradient at the
    step; ``grad_bytes`` is the size of the optimizer's gradients (what each reset
    discards). Files from before these fields read ``passes_discarded`` as 1 (that probe
    recorded a reset only after a backward).
    """

    KIND: ClassVar[str] = "grad-reset"
    via: str = "optimizer.zero_grad"
    variable: str | None = None
    optimizer: str | None = None
    params_checked: int = 0
    grads_none: int = 0
    step_location: Mapping[str, Any] | None = None
    passes_discarded: int = 1
    passes_kept: int = 0
    resets: int = 1
    grad_bytes: int = 0
    optimizer_serial: int = 0
    inside_step: bool = False


@dataclass(frozen=True, slots=True)
class GradCarriedOver(Evidence):
    """An optimizer stepped on gradients that still held passes an earlier step had used.

    Nothing reset its parameters' gradients since its previous step, and backward added
    new gradients on top: this is the ``carried_steps``-th such step in a row, and the
    gradient it steps sums ``passes_in_sum`` backward passes (since the last reset seen, or
    since the watch started). ``reset_location``/``reset_call`` name the last reset that
    reached it (None: none seen in ``resets`` resets so far); the event's location is the
    step call. ``grad_bytes`` is the size of its gradients.
    """

    KIND: ClassVar[str] = "grad-carried-over"
    optimizer: str | None = None
    optimizer_serial: int = 0
    variable: str | None = None
    carried_steps: int = 0
    passes_in_sum: int = 0
    steps: int = 0
    resets: int = 0
    reset_call: str | None = None
    reset_location: Mapping[str, Any] | None = None
    grad_bytes: int = 0


@dataclass(frozen=True, slots=True)
class StaleOptimizerParams(Evidence):
    """At an optimizer step: its parameters that no recently forwarded root module holds.

    ``orphans`` of the optimizer's ``params`` (those requiring grad) are in none of the
    ``forwarded`` root modules run since its previous check; ``orphans_with_grad`` of them
    had a gradient at the step, ``orphan_grads_zero`` of the ``orphan_grads_checked``
    sampled gradients were all zeros. Bytes are storages counted once: the orphan
    parameters, their gradients and their optimizer state. ``optimizer_serial`` tells the
    optimizers of one run apart; ``created_at`` is where it was built, when seen.
    """

    KIND: ClassVar[str] = "stale-optimizer-params"
    optimizer: str | None = None
    optimizer_serial: int = 0
    variable: str | None = None
    params: int = 0
    orphans: int = 0
    orphans_with_grad: int = 0
    orphan_grads_checked: int = 0
    orphan_grads_zero: int = 0
    orphan_bytes: int = 0
    grad_bytes: int = 0
    state_bytes: int = 0
    forwarded: int = 0
    modules: tuple[str, ...] = ()
    created_at: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class GcCycleGarbage(Evidence):
    """Objects of one kind, each on a reference cycle, left for the cyclic collector.

    Gathered by ``collect/gc_probe.py`` (counts are for the whole run so far, so the
    latest event of a ``cycle`` tells everything): the objects (``object_type``, last
    bound to ``variable``) lie on a cycle whose path from the object back to itself is
    ``hops`` (``(edge, type)`` pairs: ``(".which_act", "bound method Net.relu_act")``,
    ``(".__self__", "Net")``). ``unreachable``: objects found unreachable but alive at a
    step end (garbage only ``gc`` frees); ``reclaimed_by_gc``: objects that died during
    a collection; ``freed_by_refcount``: objects of this cycle that died without one;
    ``refcount_after_unreachable``: objects judged unreachable that then died without a
    collection (the verdict was wrong: the detector distrusts the evidence). ``pending``
    is how many are unreachable now, ``peak_pending`` the most at once (step ends) and
    ``peak_reclaimed_at_once`` the most one collection freed; ``object_bytes`` the tensor
    bytes one object kept alive (the largest seen), ``peak_pending_bytes`` those of the
    peak. ``garbage_objects``: distinct objects shown to be garbage during the run (found
    unreachable, or reclaimed by a collection before a test). ``longest_pending_steps``:
    steps the longest-waiting object stayed unreachable.
    ``first_step``: the step end at which the first object was shown to be garbage.
    ``at_stop`` (``at_stop_bytes``): objects first found unreachable when the watch
    stopped, not counted in the run's numbers. ``user_type``: an object on the cycle
    (class or function) is the program's own, not a library's.
    """

    KIND: ClassVar[str] = "gc-cycle-garbage"
    cycle: str = ""
    variable: str | None = None
    object_type: str = ""
    user_type: bool = True
    hops: tuple[tuple[str, str], ...] = ()
    object_bytes: int = 0
    watched: int = 0
    garbage_objects: int = 0
    unreachable: int = 0
    reclaimed_by_gc: int = 0
    freed_by_refcount: int = 0
    refcount_after_unreachable: int = 0
    pending: int = 0
    peak_pending: int = 0
    peak_pending_bytes: int = 0
    peak_reclaimed_at_once: int = 0
    longest_pending_steps: int = 0
    at_stop: int = 0
    at_stop_bytes: int = 0
    first_step: int | None = None
    created_at: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class UnbatchedForwards(Evidence):
    """A step's root forwards on single samples (1-D or batch of 1)."""

    KIND: ClassVar[str] = "unbatched-forwards"
    calls: int = 0
    forwards: int | None = None
    same_base: int = 0
    shape: tuple[int, ...] = ()
    model: str | None = None
    variable: str | None = None
    listed: int = 0  # of the calls checked, inputs found in one list the caller holds
    listed_checked: int = 0  # calls checked for that (the first few of the step)


@dataclass(frozen=True, slots=True)
class ConvInputShapes(Evidence):
    """New input shapes of a convolutional model while ``cudnn.benchmark`` was on."""

    KIND: ClassVar[str] = "conv-input-shapes"
    new: int = 0
    distinct: int = 0
    examples: tuple[tuple[int, ...], ...] = ()
    model: str | None = None
    benchmark: bool = True
    variable: str | None = None


@dataclass(frozen=True, slots=True)
class OomRetry(Evidence):
    """What was still held when the step after an out-of-memory error ran again."""

    KIND: ClassVar[str] = "oom-retry"
    oom_index: int | None = None
    oom_step: int | None = None
    oom_location: str | None = None  # "file:line" of the failed attempt
    held_bytes: int = 0
    held_exact: bool = False
    attempt_bytes: int | None = None
    pre_attempt_bytes: int | None = None
    in_use_at_oom: int | None = None
    in_use_bytes: int | None = None
    saved_before_attempt: int | None = None
    saved_bytes: int = 0
    ooms: int = 0
    exception_alive: bool = False
    in_except_block: bool = False
    unattributed_bytes: int = 0
    holders: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Oom(Evidence):
    """An out-of-memory error (CUDA or memwatch's CPU budget) and the memory around it.

    Written from the OOM observer's open-ended dict (probes add keys at the error), so
    this type names the keys detectors read; other keys stay in the stored data.
    """

    KIND: ClassVar[str] = "oom"
    requested_bytes: int | None = None
    in_use_bytes: int | None = None
    oom_index: int | None = None
    retry_of: int | None = None
    attempt_bytes: int | None = None
    saved_bytes: int | None = None
    rss_bytes: int | None = None
    allocated_bytes: int | None = None
    holders: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class TrainStepEvalMode(Evidence):
    """An optimizer step that trained a root module forwarded in eval mode.

    Gathered by ``collect/loop/train_mode.py`` at the step end: the module ran its forward
    with grad enabled while ``module.training`` was False, a backward used it, and an
    optimizer stepped some of its parameters (requires_grad, with a gradient). Located
    where the module was last switched to eval (the user's ``eval()``/``train(False)``).
    """

    KIND: ClassVar[str] = "train-step-eval-mode"
    model: str | None = None  # the root module's class
    variable: str | None = None  # the receiver at the line that set eval: ``self.img_enc``
    eval_modules: tuple[str, ...] = ()  # dropout/batch-norm submodules in eval (first few)
    eval_module_count: int = 0
    stochastic_count: int = 0  # dropout/batch-norm submodules in all
    stepped_params: int = 0  # its parameters the optimizer stepped (requires_grad, grad)
    steps: int = 0  # training steps of this module in eval mode so far (this one included)
    set_how: str | None = None  # "eval()" or "train(False)"; None: not seen while watching
    set_step: int | None = None  # the step during which eval was set
    set_before_watch: bool = False  # in eval already when the watch started, or set by
    # assigning ``.training`` (no eval()/train(False) call seen on it or a parent)


@dataclass(frozen=True, slots=True)
class GlobalFlagOn(Evidence):
    """A process-wide autograd switch on while training steps ran (anomaly detection, the
    autograd profiler / emit_nvtx), located where the user turned it on.

    Gathered by ``collect/flags_probe.py`` at step ends (a cheap read of the flag);
    ``steps_on`` counts the training steps (with a backward) that ended with it on.
    """

    KIND: ClassVar[str] = "global-flag-on"
    flag: str = ""  # "anomaly-detection", "autograd-profiler"
    steps_on: int = 0
    steps_seen: int = 0  # training steps checked in all
    first_step: int = 0
    consecutive: int = 0  # the latest run of steps in a row with it on
    set_call: str | None = None  # the call that turned it on, as written
    set_before_watch: bool = False  # on already when the watch started


@dataclass(frozen=True, slots=True)
class LiveHooks(Evidence):
    """Hooks registered at one line of the user's code and still registered.

    Gathered by ``collect/hook_sites.py``: the ``register_*hook`` calls are wrapped to
    remember the handle's (hooks dict, id) per registration site; on a step-end stride the
    live ones are counted (a removed handle, or a dead module or tensor, drops out).
    Recorded when the count changed; whether it piles up is the detector's call.
    """

    KIND: ClassVar[str] = "live-hooks"
    method: str = ""  # "register_forward_pre_hook", "register_hook" (tensor) ...
    live: int = 0  # hooks from this line still registered
    registered: int = 0  # registered at this line in all
    owners: int = 0  # distinct modules / tensors holding the live ones
    max_per_owner: int = 0  # most live hooks from this line on one of them
    owner_type: str | None = None  # class of that most-hooked module / tensor
    owner_path: str | None = None  # where it sits: ``model.layers.0`` (when found)
    variable: str | None = None  # the receiver at the line: ``layer``, ``module``
    capped: bool = False  # more registrations than the probe follows (counts are floors)


#: Every evidence kind, by the event kind it is stored as.
EVIDENCE_KINDS: dict[str, type[Evidence]] = {
    k.KIND: k
    for k in (
        GraphAccumulation,
        HolderGrowth,
        CensusTotals,
        LingeringLocals,
        GraphKeptAcrossStep,
        RetainGraphBackward,
        ForwardWithoutBackward,
        EvalPassTrainMode,
        MicrobatchBackward,
        GradReset,
        GradCarriedOver,
        StaleOptimizerParams,
        GcCycleGarbage,
        UnbatchedForwards,
        ConvInputShapes,
        OomRetry,
        Oom,
        TrainStepEvalMode,
        GlobalFlagOn,
        LiveHooks,
    )
}


# -- versions ------------------------------------------------------------------------------


def check_version(version: int, path: object) -> None:
    """Refuse, with one line, a run file whose evidence is newer than this memwatch reads."""
    if version > EVIDENCE_VERSION:
        raise RunFileError(
            f"{path} holds evidence version {version}; this memwatch reads up to "
            f"{EVIDENCE_VERSION} (upgrade memwatch to read it)"
        )


def upgrade(event: Event, version: int) -> Event:
    """``event`` as stored by evidence ``version``, in the current layout.

    0 → 1: ``holder-growth`` carried the probe's verdict ``state`` (growing, stopped,
    reset), and ``graph-accumulation`` was written only once proven (``confirmed_step``);
    both now carry the measurements the detectors judge instead. Other kinds kept their
    keys.
    """
    if version >= EVIDENCE_VERSION or not isinstance(event.data, Mapping):
        return event  # current, or not an object (read back as an EvidenceError)
    if event.kind == GraphAccumulation.KIND:
        data = dict(event.data)
        if data.pop("confirmed_step", None) is not None:  # proven by the old probe
            data["hit_streak"] = max(2, int(data.get("hit_streak") or 0))
        return dataclasses.replace(event, data=data)
    if event.kind != HolderGrowth.KIND:
        return event
    data = dict(event.data)
    state = data.pop("state", None)
    if isinstance(state, str):
        data.setdefault("same_container", state != "reset")
        # "growing": grew at this step; "stopped"/"reset": not since the last emit before.
        if state == "growing":
            data.setdefault("last_growth_step", event.step)
        else:
            data.setdefault("last_growth_step", None)
            data.setdefault("growth_per_step_bytes", 0)
    return dataclasses.replace(event, data=data)


# -- coercion ------------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        every = typing.get_type_hints(cls)
        hints = {f.name: every[f.name] for f in dataclasses.fields(cls)}
        _HINTS[cls] = hints
    return hints


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value)
    if hint is bool:
        if not isinstance(value, (bool, int)):
            raise TypeError(f"expected a boolean, got {type(value).__name__}")
        return bool(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {type(value).__name__}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if len(args) != len(value):
            raise ValueError(f"expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v) for a, v in zip(args, value))
    if origin is Mapping or hint is Mapping:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return dict(value)
    if isinstance(hint, type) and issubclass(hint, Evidence):
        return hint.from_data(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Evidence):
        return value.to_data()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return dict(value)
    return value
