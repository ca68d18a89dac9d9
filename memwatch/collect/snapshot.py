"""CUDA memory snapshots for PyTorch's memory_viz: at step N, and/or at the first OOM.

``torch.cuda.memory._record_memory_history`` keeps a bounded ring of allocator events
(``MAX_ENTRIES``, Python stacks only: C++ stacks cost far more) from the start of the
watch; ``_dump_snapshot`` writes it, with the allocator's segments, as a pickle that
https://pytorch.org/memory_viz opens. memwatch writes it beside the run file
(``<run>-step<N>.pickle``, ``<run>-oom.pickle``), never over an existing file, records a
``snapshot`` event with the path, and prints one line saying where it is. memwatch never
reads the pickle back.

Where the API is missing (no CUDA, an old torch) the probe prints one line and does
nothing else; recording history is switched off again when the watch stops.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch

from memwatch.collect import cuda
from memwatch.collect.probe import Probe
from memwatch.notices import notice
from memwatch.records import Event, StepRecord
from memwatch.store.claim import claim_fresh_file

if TYPE_CHECKING:
    from memwatch.collect.probe import ProbeHost

MAX_ENTRIES = 100_000
SNAPSHOT_EVENT = "snapshot"


def snapshot_api() -> tuple[Any, Any] | None:
    """(record_memory_history, dump_snapshot) where CUDA and the API exist, else None."""
    memory = getattr(torch.cuda, "memory", None)
    record = getattr(memory, "_record_memory_history", None)
    dump = getattr(memory, "_dump_snapshot", None)
    if record is None or dump is None or not cuda.built() or not cuda.host_has_devices():
        return None
    return record, dump


class SnapshotProbe(Probe):
    """Records allocator history and dumps it at ``at_step`` and/or at the first OOM."""

    name = "snapshot"

    def __init__(self, base: Path, at_step: int | None, on_oom: bool) -> None:
        self.base = base  # the run file's path without its suffix
        self.at_step = at_step
        self.dump_on_oom = on_oom
        self._api: tuple[Any, Any] | None = None
        self._recording = False
        self._oom_done = False
        self._cancel_start: Any = None

    def on_start(self, tracker: ProbeHost) -> None:
        self._api = snapshot_api()
        if self._api is None:
            notice(
                "CUDA memory snapshots need a CUDA device and "
                "torch.cuda.memory._record_memory_history; no snapshot will be written"
            )
            return
        # Never initialise CUDA for the program: start recording when it does.
        self._cancel_start = cuda.when_initialized(self._start_recording, "CUDA memory snapshots")

    def _start_recording(self) -> None:
        assert self._api is not None
        record, _ = self._api
        record(enabled="all", context="all", stacks="python", max_entries=MAX_ENTRIES)
        self._recording = True

    def on_step_end(self, tracker: ProbeHost, record: StepRecord, frames: list[FrameType]) -> None:
        if self._recording and self.at_step is not None and record.step == self.at_step:
            self._dump(tracker, f"step{record.step}", record.step)
            if not self.dump_on_oom or self._oom_done:
                self._stop_recording()

    def on_oom(self, tracker: ProbeHost, info: dict[str, Any], frame: FrameType | None) -> None:
        if self._recording and self.dump_on_oom and not self._oom_done:
            self._oom_done = True
            path = self._dump(tracker, "oom", tracker.step)
            if path is not None:
                info["snapshot"] = str(path)
            if self.at_step is None or tracker.step > self.at_step:
                self._stop_recording()

    def on_stop(self, tracker: ProbeHost) -> None:
        cancel, self._cancel_start = self._cancel_start, None
        if cancel is not None:
            cancel()
        self._stop_recording()

    def _dump(self, tracker: ProbeHost, tag: str, step: int) -> Path | None:
        assert self._api is not None
        path = claim_fresh_file(
            self.base.with_name(f"{self.base.name}-{tag}.pickle"), "snapshot file"
        )
        try:
            self._api[1](str(path))  # overwrites the empty file claimed for it, nothing else
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        tracker.emit(Event(SNAPSHOT_EVENT, step, time.time(), {"path": str(path), "reason": tag}))
        notice(f"CUDA memory snapshot at {path} (open it in PyTorch's memory_viz)")
        return path

    def _stop_recording(self) -> None:
        if self._recording and self._api is not None:
            self._recording = False
            try:
                self._api[0](enabled=None)
            except Exception:
                pass
