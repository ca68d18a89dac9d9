"""``FrameworkWatch``: a memwatch run driven by a training framework's own counters.

Frameworks own the training loop, so the integration, not the optimizer hook, says where
a step ends: at the framework's optimizer step (its global step), which is also where
gradient accumulation completes. Phases (train, validation, test, predict, sanity check)
become ``phase`` events of the step they happen in; new findings go to the framework's
logger as they appear; the run file and the report come out when the framework stops.
Each rank of a distributed run writes its own run file into one run directory (the same
paths as ``memwatch run`` under torchrun).

Nothing here imports torch or a framework: the framework modules pass in what they know.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, Protocol

from memwatch.plaintext import plain
from memwatch.records import Finding

#: The ``phase`` event: ``{"phase": name, "state": "start"|"end", "framework": ...,
#: "global_step": n}``.
PHASE_EVENT = "phase"
PHASES = ("train", "validation", "test", "predict", "sanity_check")


class Logger(Protocol):
    """What a framework's logger offers (``logging.Logger`` and its look-alikes)."""

    def warning(self, msg: str, *args: Any) -> Any: ...
    def info(self, msg: str, *args: Any) -> Any: ...


class FrameworkWatch:
    """One memwatch run for one framework stage (``fit``, ``train`` ...).

    Args:
        framework: ``"lightning"``, ``"transformers"``, ``"accelerate"`` (recorded).
        logger: where findings go as they appear (the framework's own logger).
        out: run file or run directory (default ``memwatch-runs/...``; under several
            ranks a run directory with one ``-rank<N>`` file per rank).
        report: print the text report to stderr when the run ends (on rank 0 only).
        watch_options: passed to ``memwatch.Watch`` (``budget``, ``track_tensors``,
            ``analysis``, ``warmup``, ``store`` ...).
    """

    def __init__(
        self,
        framework: str,
        logger: Logger,
        out: str | os.PathLike[str] | None = None,
        report: bool = True,
        **watch_options: Any,
    ) -> None:
        self.framework = framework
        self.logger = logger
        self.out = out
        self.print_report = report
        self.watch_options = watch_options
        self.watch: Any = None
        self._marked = 0  # framework global step already closed as a memwatch step
        self._announced: set[str] = set()
        self._phase: str | None = None
        self._rank: int | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.watch is not None and bool(self.watch.active)

    def start(self, global_step: int, rank: int | None, world_size: int | None) -> None:
        """Start recording (once); steps count from the framework's ``global_step``."""
        if self.watch is not None:
            return
        from memwatch.session import active_watch, memwatch

        if active_watch() is not None and not active_watch().yields_to_nested:  # type: ignore[union-attr]
            self.logger.warning(
                "memwatch: another watch is already running in this process (memwatch run "
                "or `with memwatch()`): the %s callback leaves the recording to it",
                self.framework,
            )
            return
        distributed = world_size is not None and world_size > 1
        self._rank = rank if distributed else None
        options = dict(self.watch_options)
        self.watch = memwatch(
            self.out,
            manual_steps=True,
            rank=self._rank,
            world_size=world_size if distributed else None,
            **options,
        )
        self.watch.start()
        if not self.watch.active:  # could not start: memwatch said why, training goes on
            self.watch = None
            return
        self._marked = int(global_step)
        self.watch.note(
            "framework",
            {"framework": self.framework, "global_step": int(global_step)},
        )

    def stop(self, failed: bool = False) -> None:
        """Close the last step, judge the whole run, write the run file and the report."""
        watch, self.watch = self.watch, None
        if watch is None:
            return
        if self._phase is not None:
            self._note_phase(watch, self._phase, "end")
            self._phase = None
        watch.stop(exit_status=1 if failed else 0)
        self._announce(watch.findings)
        where = f" {watch.run_path}" if watch.run_path is not None else ""
        if self.print_report and not self._rank:
            print(watch.report(), file=sys.stderr, end="")
            if where:
                print(f"memwatch: run file{where}", file=sys.stderr)
        else:
            self.logger.info(
                "memwatch: %d finding(s) in %d steps; run file%s",
                len(watch.findings),
                watch.step_count,
                where,
            )

    # -- what the framework reports ---------------------------------------------------------
    def step_to(self, global_step: int) -> None:
        """The framework's global step reached ``global_step``: close the steps before it."""
        watch = self.watch
        if watch is None or not watch.active:
            return
        global_step = int(global_step)
        if global_step <= self._marked:
            return
        # One optimizer step per memwatch step; a jump (a resumed counter) closes one step.
        self._marked = global_step
        watch.step()
        self._announce(watch.findings)

    def batch_done(self) -> None:
        """An evaluation-only stage (test, predict, validate) has no optimizer step: one
        batch is one step."""
        watch = self.watch
        if watch is not None and watch.active:
            watch.step()
            self._announce(watch.findings)

    def phase(self, name: str, state: str, global_step: int | None = None) -> None:
        """A phase starts or ends (``validation``/``start``...)."""
        watch = self.watch
        if watch is None or not watch.active:
            return
        if state == "start":
            if self._phase == name:
                return
            if self._phase is not None:
                self._note_phase(watch, self._phase, "end", global_step)
            self._phase = name
        else:
            if self._phase != name:
                return
            self._phase = None
        self._note_phase(watch, name, state, global_step)

    def _note_phase(
        self, watch: Any, name: str, state: str, global_step: int | None = None
    ) -> None:
        data: dict[str, Any] = {"phase": name, "state": state, "framework": self.framework}
        if global_step is not None:
            data["global_step"] = int(global_step)
        watch.note(PHASE_EVENT, data)

    def _announce(self, findings: list[Finding]) -> None:
        """Each finding once, to the framework's logger, as soon as it appears."""
        for finding in findings:
            if finding.key in self._announced:
                continue
            self._announced.add(finding.key)
            log: Callable[..., None] = (
                self.logger.warning
                if finding.severity in ("error", "warning")
                else self.logger.info
            )
            rank = f" [rank {self._rank}]" if self._rank is not None else ""
            where = f" at {finding.location}" if finding.location is not None else ""
            log(
                "memwatch%s: %s [%s] %s%s; fix: %s",
                rank,
                finding.severity.upper(),
                plain(finding.kind),
                plain(finding.title),
                plain(where),
                plain(finding.fix),
            )
