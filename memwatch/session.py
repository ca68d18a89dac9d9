"""``memwatch()``: the watch a user wraps around training, and what it owns.

A ``Watch`` connects the collection layer (``memwatch.collect``, imported only when the
watch starts, so ``import memwatch`` stays free of torch) to the run file and to the
detectors, which run every few steps on a bounded window so that findings reach the run
file (and a live dashboard) while training goes on.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from memwatch.analysis import AnalysisInput, analyze
from memwatch.collect import active as collection
from memwatch.collect.sampling import ROUTINE_EVIDENCE
from memwatch.errors import MemwatchError
from memwatch.notices import notice
from memwatch.records import (
    Event,
    Finding,
    Holder,
    MemoryCategories,
    RunInfo,
    StepRecord,
    sort_findings,
)
from memwatch.store.paths import run_file_plan
from memwatch.store.writer import RunWriter, failure_reason
from memwatch.units import parse_budget

F = TypeVar("F", bound=Callable[..., Any])

#: Share of the watch's wall time the live analysis may use: healthy loops (no new
#: evidence) and loops whose probes just reported something.
ANALYSIS_SHARE = 0.005
ANALYSIS_SHARE_WITH_EVIDENCE = 0.10
#: Steps (and as many events) a watch keeps in memory for its live analysis and ``mw.steps``:
#: memwatch's bookkeeping grows with a run until this is full, then stays flat.
WINDOW = 4096
#: Steps a live pass sees in full; older steps in the window are thinned to as many.
LIVE_RECENT_STEPS = 512

_ACTIVE: Watch | None = None
_FORK_HANDLER_REGISTERED = False
_ABANDONED: list[object] = []  # connections inherited by forked children, never finalised


def _after_fork_in_child() -> None:
    watch = _ACTIVE
    if watch is not None:
        watch._after_fork_in_child()


class Watch:
    """One recording session. Use as ``with memwatch() as mw:`` or as a decorator.

    Args:
        out: run-file path (default ``memwatch-runs/<script>-<time>.db``); a directory
            gets a fresh name inside it; under torchrun each rank writes its own
            ``-rank<N>`` file (see ``memwatch.store.paths.run_file_path``).
        budget: make the device behave as if it had this many bytes (``"512MiB"``).
        track_tensors: on CPU, count live tensor bytes created under the watch so steps
            get ``allocated_bytes``/``peak_allocated_bytes`` (per-op interception: slower;
            ``budget`` implies it; on CUDA the allocator already counts).
        script: the name the run is filed under (default: the main script).
        analysis: ``"default"`` (cheap, always-on checks) or ``"deep"`` (also the
            expensive confirmations on every analysis pass, for debugging sessions).
        analyze_every: run the detectors every this many steps.
        warmup: steps the detectors ignore when judging growth.
        live_warnings: print a line to stderr when a new error-level finding appears.
        manual_steps: only ``mw.step()`` ends steps (otherwise the first ``mw.step()`` call
            switches automatic detection off from then on).
        store: write a run file at all (pytest helpers keep everything in memory).
        force: replace an earlier memwatch run file at ``out`` (never any other file).
        rank, world_size: the process's rank as a framework knows it (Lightning, the
            transformers Trainer), for launchers that do not set torchrun's ``RANK``.
        snapshot_at_step, snapshot_on_oom: on CUDA, write a PyTorch memory snapshot (for
            memory_viz) beside the run file at the end of that step / at the first OOM.
    """

    #: A background watch (pytest's ``--memwatch``) stops when the user starts their own.
    yields_to_nested = False

    def __init__(
        self,
        out: str | os.PathLike[str] | None = None,
        budget: str | int | None = None,
        *,
        script: str | None = None,
        argv: Sequence[str] | None = None,
        analysis: str = "default",
        analyze_every: int = 4,
        warmup: int = 3,
        live_warnings: bool = False,
        store: bool = True,
        window: int = WINDOW,
        manual_steps: bool = False,
        track_tensors: bool = False,
        force: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        snapshot_at_step: int | None = None,
        snapshot_on_oom: bool = False,
    ) -> None:
        if analysis not in ("default", "deep"):
            raise MemwatchError(f"analysis must be 'default' or 'deep', not {analysis!r}")
        self.budget_bytes = parse_budget(budget) if budget is not None else None
        self.track_tensors = bool(track_tensors) or self.budget_bytes is not None
        self.analysis_mode = analysis
        self.analyze_every = max(1, int(analyze_every))
        self.warmup = warmup
        self.live_warnings = live_warnings
        self._script = script or _main_script_name()
        self._argv = tuple(argv if argv is not None else sys.argv)
        self._out = Path(out) if out is not None else None
        self._use_store = store
        self._force = force
        self._manual_steps = manual_steps
        self._rank = (rank, world_size)
        self.snapshot_at_step = snapshot_at_step
        self.snapshot_on_oom = snapshot_on_oom
        self.run_path: Path | None = None
        self.info: RunInfo | None = None
        self._writer: RunWriter | None = None
        self._tracker: Any = None
        self._budget: Any = None
        self._steps: deque[StepRecord] = deque(maxlen=window)
        self._events: deque[Event] = deque(maxlen=window)
        self._categories: deque[MemoryCategories] = deque(maxlen=window)
        # evidence the live passes already read back (AnalysisInput.parsed)
        self._parsed: dict[int, tuple[Event, Any]] = {}
        self._findings: dict[str, Finding] = {}
        self._step_count = 0
        self._events_seen = 0
        self._analyzed_events = 0
        self._analyzed_at_step = 0
        self._analysis_seconds = 0.0
        self._started = time.perf_counter()
        self._pid = os.getpid()
        # Set in a forked child (``os.register_at_fork``): its writes go nowhere. A flag,
        # not ``os.getpid()`` at each write: that is a system call, three times a step.
        self._forked_child = False
        self._store_failed = False
        self.successors: list[Watch] = []
        """Watches that started while this one yields (pytest --memwatch), in order."""
        self.recording_stopped: tuple[int, str] | None = None
        """(last step in the run file, why) once writing the run file failed."""
        self.active = False

    # -- public API ---------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        """What the detectors found so far, most severe first."""
        return sort_findings(list(self._findings.values()))

    @property
    def steps(self) -> list[StepRecord]:
        """The recorded steps still in memory (the most recent ``window``)."""
        return list(self._steps)

    @property
    def events(self) -> list[Event]:
        return list(self._events)

    @property
    def categories(self) -> list[MemoryCategories]:
        """Memory by category of the recorded steps still in memory."""
        return list(self._categories)

    @property
    def step_count(self) -> int:
        return self._step_count

    def step(self) -> None:
        """Mark the end of a training step by hand (turns automatic detection off)."""
        if self.active and self._tracker is not None and os.getpid() == self._pid:
            try:
                self._tracker.mark_step(sys._getframe(1))
            except Exception as exc:
                self._tracker.fail("manual step marking", exc)

    def note(self, kind: str, data: dict[str, Any]) -> None:
        """Record an observation made outside torch (a framework's phase change) as an
        event of the current step; detectors and views read it like any other event."""
        if self.active and self._tracker is not None and os.getpid() == self._pid:
            try:
                self._tracker.emit(Event(kind, self._tracker.step, time.time(), data))
            except Exception as exc:
                self._tracker.fail("event recording", exc)

    def report(self, format: str = "text") -> str:
        """The report of this watch as text, markdown or JSON."""
        from memwatch.report import render

        return render(format, self.info, self.steps, self.findings, categories=self.categories)

    # -- context manager / decorator ---------------------------------------------------------
    def __enter__(self) -> Watch:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self.note_exception(exc)
        self.stop(exit_status=None if exc_type is None else 1)

    def note_exception(self, exc: BaseException) -> None:
        """The error that ended the watched code: an out-of-memory failure that is not
        ``torch.OutOfMemoryError`` (cuBLAS, cuDNN, MPS, "CUDA error: out of memory") is
        recorded as an ``oom`` event (``OutOfMemoryError`` records itself when raised)."""
        if not self.active or self._tracker is None or os.getpid() != self._pid:
            return
        try:
            from memwatch.collect import oom

            oom.observe_exception(exc)
        except Exception:
            pass

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def start(self) -> None:
        if _ACTIVE is not None:
            if not _ACTIVE.yields_to_nested:
                raise MemwatchError("another memwatch watch is already active in this process")
            background = _ACTIVE
            background.stop()  # a background watch (pytest --memwatch) gives way to the user's
            background.successors.append(self)  # ...and can still say what that one recorded
        from memwatch.collect import environment
        from memwatch.collect.probes import default_probes
        from memwatch.collect.tracker import Tracker

        environment.check_torch_version()
        try:
            self._start_recording(environment, default_probes, Tracker)
        except MemwatchError:
            self._abort_start()
            raise
        except Exception as exc:
            # An internal failure must not stop the user's program: run it unwatched.
            self._abort_start()
            notice(f"could not start ({exc!r}); the program runs without it")
        except BaseException:  # Ctrl-C while starting: a run that never started leaves no file
            self._abort_start(discard=True)
            raise

    def _start_recording(self, environment: Any, default_probes: Any, tracker_cls: Any) -> None:
        global _ACTIVE, _FORK_HANDLER_REGISTERED
        self.info = environment.run_info(str(uuid.uuid4()), self._script, self._argv)
        if self._rank[0] is not None and self.info.rank is None:
            from dataclasses import replace

            self.info = replace(self.info, rank=self._rank[0], world_size=self._rank[1])
        self._started = time.perf_counter()  # the analysis budget counts from here
        if self._use_store:
            # Under torchrun each rank names its own file (see run_file_path).
            path, alternatives = run_file_plan(self._out, self._script, rank=self.info.rank)
            self._writer = RunWriter(path, self.info, alternatives=alternatives, force=self._force)
            self.run_path = self._writer.path  # the name actually created
        device = None
        if self.track_tensors:
            from memwatch.collect.budget import install_budget

            self._budget = install_budget(self.budget_bytes)
            device = self._budget.device_memory()
        from memwatch.collect.probes import ProbeOptions

        self._tracker = tracker_cls(
            self,
            default_probes(
                ProbeOptions(
                    deep=self.analysis_mode == "deep",
                    snapshot_at_step=self.snapshot_at_step,
                    snapshot_on_oom=self.snapshot_on_oom,
                    run_path=self.run_path,
                )
            ),
            device=device,
            sample=self.analysis_mode != "deep",  # deep: saved tensors counted every step
        )
        self._tracker.manual = self._manual_steps
        _ACTIVE = self
        collection.register(self._tracker, self._budget)
        if not _FORK_HANDLER_REGISTERED and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _FORK_HANDLER_REGISTERED = True
        self.active = True
        self._tracker.start()

    def _abort_start(self, discard: bool = False) -> None:
        """Undo whatever a failed start installed, so the process is as before (``discard``:
        also remove the run file this watch just created, for a run that never started)."""
        global _ACTIVE
        self.active = False
        if _ACTIVE is self:
            _ACTIVE = None
        collection.clear(self._tracker)
        if self._tracker is not None:
            try:
                self._tracker._remove_hooks()
            except Exception:
                pass
            self._tracker = None
        if self._budget is not None:
            try:
                self._budget.uninstall()
            except Exception:
                pass
            self._budget = None
        if self._writer is not None:
            try:
                self._writer.close(self.info)
            except Exception:
                pass
            if discard:
                from memwatch.store.claim import discard_claimed

                discard_claimed(self._writer.path)
                self.run_path = None
            self._writer = None

    def stop(self, exit_status: int | None = None) -> None:
        """Close the last step, run the final analysis and close the run file."""
        global _ACTIVE
        if not self.active:
            return
        self.active = False
        if os.getpid() != self._pid:  # a forked child never finalises the parent's run
            return
        try:
            if self._tracker is not None:
                self._tracker.stop()
        finally:
            if self._budget is not None:
                self._budget.uninstall()
            _ACTIVE = None
            collection.clear(self._tracker)
        self._analyze(final=True)
        if self.info is not None:
            from dataclasses import replace

            self.info = replace(self.info, ended_at=time.time(), exit_status=exit_status)
            if self.recording_stopped is not None:
                step, reason = self.recording_stopped
                self.info = replace(
                    self.info, recording_stopped_at_step=step, recording_stopped_reason=reason
                )
        if self._writer is not None and self._store_failed:
            self._writer.close_after_failure(self.info)
        elif self._writer is not None:
            try:
                self._writer.close(self.info)
            except Exception as exc:
                notice(f"could not finish the run file ({failure_reason(exc)})")

    def _after_fork_in_child(self) -> None:
        self._forked_child = True
        if self._tracker is not None:
            self._tracker.after_fork_in_child()
        if self._budget is not None:
            self._budget.after_fork_in_child()
        if self._writer is not None:
            _ABANDONED.append(self._writer.abandon())
        self.active = False

    # -- sink (called by the tracker) -----------------------------------------------------------
    def on_step(self, record: StepRecord) -> None:
        self._steps.append(record)
        self._step_count += 1
        self._write(lambda w: w.add_step(record))
        if self._analysis_due():
            self._analyze(final=False)
        self._write(lambda w: w.maybe_commit())

    def _analysis_due(self) -> bool:
        """Whether the live analysis runs at this step end, within its time budget.

        A probe's confirmation runs it at once; new evidence (events) runs it as long as
        analysis has taken at most 10% of the watch's time so far; otherwise it runs every
        ``analyze_every`` steps within 1%. Healthy loops produce no events, so the default
        mode costs them at most the small budget; ``analysis="deep"`` has no budget.
        """
        tracker = self._tracker
        if tracker is not None and tracker.analysis_requested:
            tracker.analysis_requested = False  # a probe just confirmed a problem
            return True
        steps_since = self._step_count - self._analyzed_at_step
        evidence = self._events_seen > self._analyzed_events
        if not evidence and steps_since < self.analyze_every:
            return False
        if self.analysis_mode == "deep":
            return True
        elapsed = time.perf_counter() - self._started
        share = ANALYSIS_SHARE_WITH_EVIDENCE if evidence else ANALYSIS_SHARE
        return self._analysis_seconds <= share * elapsed

    def _live_window(self) -> tuple[StepRecord, ...]:
        """The recent steps in full, older ones thinned: bounded cost per live pass."""
        steps = self._steps
        if len(steps) <= 2 * LIVE_RECENT_STEPS:
            return tuple(steps)
        older = len(steps) - LIVE_RECENT_STEPS
        stride = -(-older // LIVE_RECENT_STEPS)  # ceil: at most LIVE_RECENT_STEPS older
        thinned = list(itertools.islice(steps, 0, older, stride))
        thinned.extend(itertools.islice(steps, older, None))
        return tuple(thinned)

    def on_device(self, facts: Any) -> None:
        """The tracker saw the run's CUDA device (its first CUDA step, or a new device):
        the run is described by it from now on (memwatch never initialises CUDA to learn
        this at the start)."""
        if self.info is None:
            return
        from dataclasses import replace

        info = replace(
            self.info,
            device_type="cuda",
            device_name=facts.name,
            device_total_bytes=facts.total_bytes,
            device_index=facts.index,
        )
        self.info = info
        self._write(lambda w: w.update_run(info))

    def on_event(self, event: Event) -> None:
        self._events.append(event)
        if event.kind not in ROUTINE_EVIDENCE:  # (every step of an RL loop: no hurry)
            self._events_seen += 1
        self._write(lambda w: w.add_event(event))

    def on_holders(self, holders: list[Holder]) -> None:
        self._write(lambda w: w.add_holders(holders))

    def on_categories(self, categories: MemoryCategories) -> None:
        self._categories.append(categories)
        self._write(lambda w: w.add_categories(categories))

    def _write(self, action: Callable[[RunWriter], object]) -> None:
        if self._writer is None or self._store_failed or self._forked_child:
            return
        try:
            action(self._writer)
        except Exception as exc:
            self._store_failed = True
            # Steps before the failed commit are in the file; the batch that failed is not.
            last = self._writer.last_committed_step
            reason = failure_reason(exc)
            self.recording_stopped = (last if last is not None else -1, reason)
            where = f"after step {last}" if last is not None else "before its first step"
            notice(
                f"recording to {self._writer.path} stopped {where}: {reason}; training "
                "continues and findings stay available in memory"
            )

    def _analyze(self, final: bool) -> None:
        started = time.perf_counter()
        try:
            steps, events = self._final_input() if final else (self._live_window(), None)
            if len(self._parsed) > 2 * len(self._events) + 1024:
                self._parsed.clear()  # events that left the window: read again if needed
            found = analyze(
                AnalysisInput(
                    steps=steps,
                    events=events if events is not None else tuple(self._events),
                    info=self.info,
                    warmup=self.warmup,
                    final=final,
                    categories=tuple(self._categories),
                    parsed=self._parsed,
                )
            )
        except Exception as exc:
            if self._tracker is not None:
                self._tracker.fail("analysis", exc)
            return
        finally:
            self._analysis_seconds += time.perf_counter() - started
            self._analyzed_at_step = self._step_count
            self._analyzed_events = self._events_seen
        # The final pass judges the whole run; a live suspicion it does not support
        # (a list that grew, then stopped) is withdrawn rather than left standing.
        if final and set(self._findings) - {f.key for f in found}:
            self._findings.clear()
            self._write(lambda w: w.clear_findings())
        for finding in found:
            old = self._findings.get(finding.key)
            self._findings[finding.key] = finding
            if old != finding:
                self._store_finding(finding)
            if old is None and self.live_warnings and finding.severity == "error":
                rank = self.info.rank if self.info is not None else None
                label = f"memwatch [rank {rank}]" if rank is not None else "memwatch"
                print(f"{label}: {finding.title}", file=sys.stderr)

    def _store_finding(self, finding: Finding) -> None:
        self._write(lambda w: w.put_finding(finding))

    def _final_input(self) -> tuple[tuple[StepRecord, ...], tuple[Event, ...]]:
        """The whole run for the final pass: from the run file when there is one (the
        in-memory window holds only the most recent steps), else the window."""
        writer = self._writer
        if writer is not None and not self._store_failed and self.run_path is not None:
            try:
                writer.commit()
                from memwatch.store.reader import RunReader

                with RunReader(self.run_path) as reader:
                    return tuple(reader.steps()), tuple(reader.events())
            except Exception:
                pass  # fall back to what is in memory
        return tuple(self._steps), tuple(self._events)


def memwatch(
    out: str | os.PathLike[str] | None = None, budget: str | int | None = None, **options: Any
) -> Watch:
    """Watch the memory of the training that runs inside ``with memwatch() as mw:``.

    Steps are found from ``optimizer.step()``; call ``mw.step()`` to mark them by hand.
    Keyword options mirror the CLI (``out``, ``budget``) and ``Watch``'s arguments.
    """
    return Watch(out=out, budget=budget, **options)


def active_watch() -> Watch | None:
    """The watch running in this process, if any."""
    return _ACTIVE


def _main_script_name() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return str(path) if path else "interactive"
