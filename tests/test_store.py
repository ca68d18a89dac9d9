"""The run file: batched writes, live readers, crashes, foreign files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from memwatch.errors import RunFileError
from memwatch.records import Event, Finding, Holder, Location, RunInfo, StepRecord
from memwatch.store import RunReader, RunWriter, resolve_run
from memwatch.store.schema import SCHEMA_VERSION


def make_info(**overrides: object) -> RunInfo:
    base: dict[str, object] = {
        "id": "r1",
        "script": "train.py",
        "argv": ("train.py",),
        "started_at": 1000.0,
        "python": "3.11",
        "torch": "2.13.0",
        "device_type": "cpu",
        "device_name": "cpu",
        "device_total_bytes": None,
        "pid": 1,
        "host": "h",
    }
    base.update(overrides)
    return RunInfo(**base)  # type: ignore[arg-type]


def make_step(i: int, saved: int = 0) -> StepRecord:
    return StepRecord(
        i,
        1000.0 + i,
        0.01,
        "optimizer",
        None,
        None,
        None,
        None,
        saved,
        saved,
        0,
        100_000_000 + i,
        1,
        1,
        0,
    )


def test_written_steps_events_holders_and_findings_read_back(tmp_path: Path) -> None:
    # GIVEN a writer that records three steps, an event, holders and a finding
    path = tmp_path / "run.db"
    writer = RunWriter(path, make_info())
    for i in range(3):
        writer.add_step(make_step(i, saved=i * 10))
    loc = Location("train.py", 42, "main")
    writer.add_event(Event("oom", 2, 1002.0, {"requested_bytes": 5}, loc))
    writer.add_holders([Holder(2, "loss", 400, 1, loc), Holder(2, "pred", 800, 1, None)])
    finding = Finding(
        "graph-accumulation", "error", "t", "d", 1, "fix it", loc, "total", 8, 4, {"nodes": 3}
    )
    writer.put_finding(finding)
    # WHEN it closes and a reader opens the file
    writer.close(make_info(ended_at=2000.0, exit_status=0))
    with RunReader(path) as reader:
        # THEN everything comes back as written
        assert reader.schema_version == SCHEMA_VERSION
        assert [s.step for s in reader.steps()] == [0, 1, 2]
        assert reader.steps(after=0)[0] == make_step(1, saved=10)
        assert reader.events("oom")[0].data == {"requested_bytes": 5}
        assert reader.events("oom")[0].location == loc
        assert [h.name for h in reader.holders_at(5)] == ["pred", "loss"]
        assert reader.holders_at(1) == []
        assert reader.findings() == [finding]
        assert reader.info().exit_status == 0
    # AND a clean close leaves one self-contained file
    assert not Path(f"{path}-wal").exists()


def test_reader_sees_committed_steps_while_the_writer_is_still_open(tmp_path: Path) -> None:
    # GIVEN a writer that committed two steps and buffers a third
    path = tmp_path / "live.db"
    writer = RunWriter(path, make_info(), commit_every_s=3600, commit_every_rows=10_000)
    writer.add_step(make_step(0))
    writer.add_step(make_step(1))
    writer.commit()
    writer.add_step(make_step(2))
    # WHEN a reader opens the live file
    reader = RunReader(path)
    # THEN it sees the committed steps only, and more after the next commit
    assert reader.last_step() == 1
    writer.commit()
    assert [s.step for s in reader.steps(after=1)] == [2]
    reader.close()
    writer.close()


def test_a_sigkilled_writer_leaves_every_committed_step_readable(tmp_path: Path) -> None:
    # GIVEN a child process writing steps and committing each, reporting progress
    path = tmp_path / "killed.db"
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import make_info, make_step
        from memwatch.store import RunWriter
        w = RunWriter({str(path)!r}, make_info(), commit_every_s=0)
        i = 0
        while True:
            w.add_step(make_step(i)); w.commit()
            print(i, flush=True); i += 1
            time.sleep(0.002)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    last = -1
    deadline = time.time() + 30
    while last < 50 and time.time() < deadline:
        last = int(child.stdout.readline())
    # WHEN it is killed without any chance to clean up
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # THEN a reader opens the file and finds every step it reported, contiguous
    with RunReader(path) as reader:
        steps = [s.step for s in reader.steps()]
    assert steps[: last + 1] == list(range(last + 1))
    assert steps == list(range(len(steps)))


def test_foreign_corrupt_missing_and_future_files_get_one_clear_error(tmp_path: Path) -> None:
    # GIVEN files that are not memwatch runs of this version
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    future = tmp_path / "future.db"
    RunWriter(future, make_info()).close()
    conn = sqlite3.connect(future)
    conn.execute("UPDATE meta SET value = '9.0' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    # WHEN opened / THEN each raises RunFileError with a readable reason
    with pytest.raises(RunFileError, match="not a memwatch run file"):
        RunReader(junk)
    with pytest.raises(RunFileError, match="not a memwatch run file"):
        RunReader(other)
    with pytest.raises(RunFileError, match=r"schema 9\.0"):
        RunReader(future)
    with pytest.raises(RunFileError, match="no run file"):
        RunReader(tmp_path / "missing.db")


def test_resolve_run_defaults_to_the_newest_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN two runs in ./memwatch-runs
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "memwatch-runs"
    runs.mkdir()
    old, new = runs / "a.db", runs / "b.db"
    RunWriter(old, make_info()).close()
    RunWriter(new, make_info()).close()
    os.utime(old, (1, 1))
    # WHEN no run is named / THEN the newest is chosen; with none, a clear error
    assert resolve_run(None).resolve() == new.resolve()
    for p in runs.iterdir():
        p.unlink()
    with pytest.raises(RunFileError, match="no run given"):
        resolve_run(None)


def test_the_runs_working_directory_is_recorded_and_read_back(tmp_path, monkeypatch):
    # GIVEN a run started in some directory (schema 1.1 records it)
    from memwatch.collect.environment import run_info

    monkeypatch.chdir(tmp_path)
    info = run_info("run-1", "train.py", ["train.py"])
    assert info.cwd == str(tmp_path)
    # WHEN it is written and read back
    path = tmp_path / "run.db"
    RunWriter(path, info).close(info)
    with RunReader(path) as reader:
        # THEN the reader returns it; a run file from before 1.1 reads as None
        assert reader.info().cwd == str(tmp_path)
    old = {k: v for k, v in info.to_dict().items() if k != "cwd"}
    assert RunInfo.from_dict(old).cwd is None
