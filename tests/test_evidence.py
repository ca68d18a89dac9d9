"""Evidence is a file format: typed, versioned, read back by the detectors that declare it."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sqlite3
from pathlib import Path

import pytest

from memwatch.analysis import AnalysisInput
from memwatch.analysis.detectors import lingering_step_locals, memory_growth
from memwatch.analysis.registry import DETECTORS, KINDS
from memwatch.checks import known_kinds
from memwatch.cli import main
from memwatch.errors import RunFileError
from memwatch.evidence import (
    EVIDENCE_KINDS,
    EVIDENCE_VERSION,
    EvidenceError,
    HolderGrowth,
    LingeringLocals,
    LingeringName,
    Observed,
    upgrade,
)
from memwatch.records import Event, Location
from memwatch.store import RunReader, RunWriter
from tests.test_store import make_info, make_step


@pytest.mark.parametrize("kind", sorted(EVIDENCE_KINDS), ids=str)
def test_every_evidence_kind_survives_the_run_file_unchanged(kind: str, tmp_path: Path) -> None:
    # GIVEN a measurement of this kind with a non-default value in every field
    cls = EVIDENCE_KINDS[kind]
    measured = cls.from_data(_sample_values(cls))
    assert measured != cls(), "the sample must differ from the defaults"
    # WHEN a probe emits it and the run file is read back
    path = tmp_path / "run.db"
    writer = RunWriter(path, make_info())
    writer.add_event(measured.event(4, Location("train.py", 3, "main"), at=1.0))
    writer.close()
    with RunReader(path) as reader:
        (event,) = reader.events()
    # THEN the detector sees the very same typed measurement
    seen = AnalysisInput(steps=[], events=[event]).observed(cls)
    assert seen == [Observed(4, 1.0, Location("train.py", 3, "main"), measured)]


def _sample_values(cls: type) -> dict[str, object]:
    values: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        hint = str(f.type)
        if hint.startswith("tuple[LingeringName"):
            values[f.name] = [{"name": "loss", "bytes": 7}]
        elif hint.startswith("tuple[tuple[int, int]"):
            values[f.name] = [[1, 2]]
        elif hint.startswith("tuple[tuple[int"):
            values[f.name] = [[1, 2, 3]]
        elif hint.startswith("tuple[int"):
            values[f.name] = [1, 2]
        elif hint.startswith("tuple[str"):
            values[f.name] = ["a"]
        elif hint.startswith("tuple[Mapping"):
            values[f.name] = [{"name": "x"}]
        elif hint.startswith("Mapping"):
            values[f.name] = {"file": "a.py"}
        elif hint == "bool":
            values[f.name] = not default
        elif hint.startswith("int"):
            values[f.name] = 12345
        elif hint.startswith("str"):
            values[f.name] = "sample"
    return values


def test_a_bad_stored_value_is_refused_not_read_as_zero() -> None:
    # GIVEN an untrusted run file where a byte count is text
    event = Event("lingering-locals", 3, 0.0, {"bytes": "lots", "names": []})
    # WHEN a detector reads it THEN a clear error names the kind and the field
    with pytest.raises(EvidenceError, match="lingering-locals event has a bad 'bytes' value"):
        AnalysisInput(steps=[], events=[event]).observed(LingeringLocals)


def test_missing_keys_take_the_documented_defaults() -> None:
    # GIVEN an event written with only some keys (hand-made, or an older probe)
    evidence = LingeringLocals.from_data({"bytes": 5, "names": [{"name": "loss"}]})
    # THEN the rest are the field defaults
    assert evidence == LingeringLocals(names=(LingeringName("loss", 0),), bytes=5)


def _legacy_run(tmp_path: Path, events: list[Event], version: str | None) -> Path:
    """A run file as an older (version None: unversioned) or newer memwatch wrote it."""
    path = tmp_path / "old.db"
    writer = RunWriter(path, make_info())
    for i in range(24):
        writer.add_step(make_step(i))
    for event in events:
        writer.add_event(event)
    writer.close()
    conn = sqlite3.connect(path)
    if version is None:
        conn.execute("DELETE FROM meta WHERE key = 'evidence_version'")
    else:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'evidence_version'", (version,))
    conn.commit()
    conn.close()
    return path


def _v0_holder(step: int, state: str) -> Event:
    data = {
        "holder": "ACTIVATIONS",
        "scope": "global",
        "kind": "container",
        "state": state,  # version 0: the probe's verdict
        "bytes": (step + 1) * 256 * 1024,
        "start_bytes": 256 * 1024,
        "first_step": 1,
        "growth_per_step_bytes": 256 * 1024,
    }
    return Event("holder-growth", step, 0.0, data, Location("train.py", 12, "hook"))


@pytest.mark.parametrize(("states", "found"), [(["growing"], 1), (["growing", "stopped"], 0)])
def test_an_unversioned_run_file_is_upgraded_and_judged_the_same(
    tmp_path: Path, states: list[str], found: int
) -> None:
    # GIVEN a run file from before evidence was versioned, whose holder events carry the
    # probe's old verdict ("growing", then maybe "stopped")
    events = [_v0_holder(3 + 10 * i, s) for i, s in enumerate(states)]
    path = _legacy_run(tmp_path, events, version=None)
    # WHEN it is read back
    with RunReader(path) as reader:
        assert reader.evidence_version == 0
        read = reader.events()
    # THEN the events are in today's layout and the detector reaches the old verdict
    assert all("state" not in e.data for e in read)
    findings = memory_growth.detect(AnalysisInput(steps=[], events=read))
    assert len(findings) == found


def test_a_run_file_with_newer_evidence_gets_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    # GIVEN a run file written by a future memwatch
    path = _legacy_run(tmp_path, [], version=str(EVIDENCE_VERSION + 1))
    # WHEN it is opened THEN a one-line error says what to do
    with pytest.raises(RunFileError, match="upgrade memwatch"):
        RunReader(path)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = main(["report", str(path)])
    assert status == 2
    assert stderr.getvalue().startswith("memwatch: ") and stderr.getvalue().count("\n") == 1


def test_the_registry_declares_each_kind_and_the_evidence_it_reads() -> None:
    # GIVEN the detector registry
    # THEN each finding kind has exactly one detector, every evidence kind a probe writes
    #      is read by some detector, and forbid=[...] accepts exactly those kinds
    kinds = [d.kind for d in DETECTORS]
    assert len(kinds) == len(set(kinds))
    consumed = {e for d in DETECTORS for e in d.consumes}
    assert consumed == set(EVIDENCE_KINDS.values())
    assert known_kinds() == KINDS and "rank-imbalance" in KINDS


def test_the_lingering_verdict_lives_in_the_detector() -> None:
    # GIVEN the probe's measurements: 2 MiB lingering against a 4 MiB and a 40 MiB peak
    def seen(peak: int) -> list[Event]:
        evidence = LingeringLocals(
            names=(LingeringName("out", 2 << 20),), bytes=2 << 20, saved_peak_bytes=peak
        )
        return [evidence.event(s, Location("t.py", 9, "main"), at=0.0) for s in (3, 4)]

    # WHEN the detector judges them THEN only the share that matters (>= 10 %) is reported
    assert lingering_step_locals.detect(AnalysisInput(steps=[], events=seen(4 << 20)))
    assert not lingering_step_locals.detect(AnalysisInput(steps=[], events=seen(40 << 20)))


def test_stored_event_data_is_plain_json() -> None:
    # GIVEN any typed measurement THEN what the store writes is JSON with the field names
    data = HolderGrowth(holder="h", samples=((1, 2),)).to_data()
    assert json.loads(json.dumps(data))["samples"] == [[1, 2]]


def test_an_unversioned_graph_event_counts_as_proven() -> None:
    # GIVEN a version-0 graph-accumulation event: the old probe wrote only proven ones
    old = Event("graph-accumulation", 9, 0.0, {"variable": "total", "confirmed_step": 7})
    # WHEN upgraded THEN it carries the measurement that proves it to today's detector
    new = upgrade(old, 0)
    assert "confirmed_step" not in new.data and new.data["hit_streak"] == 2
    assert upgrade(old, EVIDENCE_VERSION) is old


@pytest.mark.parametrize("data", [[1, 2], "text", 7, None])
def test_event_data_that_is_not_an_object_is_refused_not_crashed_on(data: object) -> None:
    # GIVEN an unversioned file whose holder-growth data is not a JSON object
    event = Event("holder-growth", 3, 0.0, data)  # type: ignore[arg-type]
    # WHEN it is upgraded and read THEN the upgrade leaves it and reading names the problem
    assert upgrade(event, 0) is event
    with pytest.raises(EvidenceError, match="not an object"):
        AnalysisInput(steps=[], events=[event]).observed(HolderGrowth)


def test_live_passes_read_each_event_back_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the live analysis's memo and a window of evidence that grows between passes
    from memwatch.analysis.registry import analyze
    from memwatch.evidence import UnbatchedForwards

    reads: list[int] = []
    original = UnbatchedForwards.from_data.__func__  # type: ignore[attr-defined]

    def counting(cls: type, data: dict[str, object]) -> object:
        reads.append(1)
        return original(cls, data)

    monkeypatch.setattr(UnbatchedForwards, "from_data", classmethod(counting))
    memo: dict[int, tuple[Event, object]] = {}
    steps = [make_step(i) for i in range(40)]
    events = [UnbatchedForwards(calls=32, forwards=32).event(i) for i in range(40)]
    # WHEN three passes judge the first 20, 30 and 40 events
    for upto in (20, 30, 40):
        analyze(AnalysisInput(steps=steps[:upto], events=events[:upto], parsed=memo))
    # THEN each event was read back once, and a pass without the memo reads them all
    assert len(reads) == 40
    first = analyze(AnalysisInput(steps=steps, events=events, parsed=memo))
    assert first == analyze(AnalysisInput(steps=steps, events=events))
    assert len(reads) == 80
