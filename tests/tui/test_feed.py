"""Reading run files: the dashboard's queries agree with the fake, and bad files fail clearly."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from memwatch_tui.feed import FakeFeed, FileFeed, run_files, sample_points
from memwatch_tui.model import RunModel

from memwatch.errors import RunFileError
from memwatch.store.liveness import writer_alive
from tests.tui.runs import make_findings, make_holders, make_info, make_steps, write_run


def test_file_and_fake_sources_answer_alike(recorded_run: Path):
    # GIVEN the same run as a file and in memory
    fake = FakeFeed(
        make_info(),
        make_steps(200, spike_at=120),
        make_holders(50) + make_holders(150),
        make_findings(),
    )
    source = FileFeed(recorded_run)
    # THEN every query the dashboard makes gives the same answer
    assert source.info() == fake.info()
    assert (source.bounds().first, source.bounds().last) == (0, 199)
    for start, stop, size in ((0, 200, 30), (190, 260, 25), (0, 200, 64), (7, 500, 100)):
        # small blocks are grouped from rows, large ones aggregated by SQLite: same answer
        assert source.block_stats(start, stop, size) == fake.block_stats(start, stop, size)
    assert source.sample([0, 50, 199, 500]) == fake.sample([0, 50, 199, 500])
    assert source.step_at(120) == fake.step_at(120)
    assert source.step_at(10_000) == fake.step_at(10_000)
    assert source.step_at(-1) is None
    for step in (0, 49, 100, 101, 149, 500):  # nearest snapshot: 50 or 150, earlier on a tie
        assert source.holders_near(step) == fake.holders_near(step)
    assert source.holders_near(101)[0].step == 150
    assert source.holders_near(100)[0].step == 50
    assert {f.key for f in source.findings()} == {f.key for f in fake.findings()}
    source.close()


def test_a_killed_writer_leaves_every_committed_step_readable(tmp_path: Path):
    # GIVEN a writer that committed 50 steps and never closed (its process was killed)
    path = tmp_path / "killed.db"
    writer = write_run(path, make_info(ended_at=None), make_steps(50), close=False)
    writer.add_step(make_steps(1, start=50)[0])  # buffered, never committed
    # WHEN the dashboard opens the file
    model = RunModel(FileFeed(path), alive=lambda info: False)
    snapshot = model.refresh()
    # THEN it shows the committed steps, and the run as not recording
    assert snapshot is not None
    assert (snapshot.first, snapshot.last) == (0, 49)
    assert snapshot.info.ended_at is None and snapshot.alive is False


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a database at all" * 100, "is not a memwatch run file"),
        (None, "is not a memwatch run file"),  # a valid SQLite file of another program
    ],
)
def test_corrupt_or_foreign_files_raise_one_clear_line(tmp_path: Path, content, message):
    path = tmp_path / "bad.db"
    if content is None:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
    else:
        path.write_bytes(content)
    with pytest.raises(RunFileError, match=message) as caught:
        FileFeed(path)
    assert "\n" not in str(caught.value)


def test_a_missing_file_and_an_empty_directory(tmp_path: Path):
    with pytest.raises(RunFileError, match="no run file"):
        FileFeed(tmp_path / "nope.db")
    with pytest.raises(RunFileError, match="no run files"):
        run_files(tmp_path)


def test_rank_directories_open_the_lowest_rank_first_and_the_newest_attempt(tmp_path: Path):
    # GIVEN ranks 0, 2 and 10, rank 2 restarted once by torchelastic
    for name in ("rank10", "rank2", "rank0", "rank2-restart1"):
        write_run(tmp_path / f"train-20240101-000000-{name}.db", make_info())
    # THEN the ranks are offered in order, each by its newest attempt
    assert [p.name for p in run_files(tmp_path)] == [
        "train-20240101-000000-rank0.db",
        "train-20240101-000000-rank2-restart1.db",
        "train-20240101-000000-rank10.db",
    ]


def test_writer_alive_only_answers_for_this_host():
    import os
    import socket
    import time

    # GIVEN runs "written" by this very process, on this host
    here = make_info(ended_at=None, host=socket.gethostname(), pid=os.getpid())
    # THEN a run started after this process is alive; one started long before it is a
    # reused pid; another host's cannot be told; a run that recorded its end is over
    assert writer_alive(replace(here, started_at=time.time())) is True
    assert writer_alive(replace(here, started_at=time.time() - 10**7)) is False
    assert writer_alive(make_info(ended_at=None, host="elsewhere")) is None
    assert writer_alive(make_info()) is False


def test_sample_points_cover_both_ends():
    assert sample_points(0, 10, 3) == [0, 5, 10]
    assert sample_points(5, 5, 10) == [5]


class TestModel:
    def test_narrow_windows_are_read_exactly_and_wide_ones_from_the_index(self):
        # GIVEN a 20,000-step run whose index uses blocks of 64 steps
        steps = make_steps(20_000)
        steps[12_345] = replace(steps[12_345], peak_allocated_bytes=1 << 50)
        source = FakeFeed(make_info(), steps)
        model = RunModel(source, base=64, chunk=64)
        model.refresh()
        # WHEN drawing the whole run before the index is built
        preview = model.chart(0, 19_999, 100)
        # THEN it is a preview from sampled steps
        assert not preview.exact
        # WHEN the index is built
        while not model.index_more():
            pass
        source.calls.clear()
        whole = model.chart(0, 19_999, 100)
        # THEN the whole run's series come from the index (the only read is the category
        # rows, none here) and show the spike
        assert whole.exact and source.calls == ["categories"]
        peak = next(line for line in whole.lines if line.column == "peak_allocated_bytes")
        assert max(peak.ys) == 1 << 50
        # AND a narrow window is read from the file
        source.calls.clear()
        narrow = model.chart(100, 199, 100)
        assert narrow.exact and source.calls == ["categories", "block_stats"]

    def test_refresh_reports_only_changes_and_indexes_the_new_tail(self):
        source = FakeFeed(make_info(ended_at=None), make_steps(1000))
        model = RunModel(source, base=16, alive=lambda info: True)
        assert model.refresh() is not None
        while not model.index_more():
            pass
        # WHEN nothing was written
        # THEN a refresh says so
        assert model.refresh() is None
        # WHEN the writer adds steps and a finding
        source.append(make_steps(100, start=1000), findings=make_findings()[:1])
        snapshot = model.refresh()
        # THEN the snapshot has them, and the index catches up in one read
        assert snapshot is not None and snapshot.last == 1099 and len(snapshot.findings) == 1
        assert not snapshot.indexed
        assert model.index_more()
        assert model.chart(0, 1099, 20).exact
