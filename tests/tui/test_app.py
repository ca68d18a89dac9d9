"""The dashboard driven headlessly, as a person would: keys in, what the panels show out."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from memwatch_tui.app import MemwatchApp, run_dashboard
from memwatch_tui.feed import FakeFeed, FileFeed
from memwatch_tui.screens import ErrorScreen, HelpScreen, QuitLiveScreen
from memwatch_tui.view import stride
from memwatch_tui.widgets import FindingDetail, FindingsList, HoldersPanel, RanksPanel, Timeline
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import Static

from memwatch.errors import RunFileError
from memwatch.records import RunInfo
from tests.tui.runs import (
    GiB,
    MiB,
    drive,
    fake_feed,
    fixed_clock,
    make_app,
    make_findings,
    make_holders,
    make_info,
    make_steps,
    settle,
    write_run,
)

pytestmark = pytest.mark.timeout(60)


def text(app: MemwatchApp, selector: str) -> str:
    """What a person reads in a Static: its text without markup."""
    visual = app.query_one(selector, Static).visual
    return visual.plain if isinstance(visual, Content) else str(visual)


async def wait_for(pilot: Pilot[object], condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Let the app run (workers, timers) until ``condition()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


@drive
async def test_a_recorded_run_opens_with_header_timeline_and_findings(recorded_run: Path):
    # GIVEN a finished run file of 200 steps with three findings
    app = MemwatchApp(FileFeed(recorded_run), clock=fixed_clock)
    async with app.run_test() as pilot:
        # WHEN the dashboard has read it
        await settle(pilot)
        # THEN the header names the command, the last step and how the run ended
        assert "train.py --lr 0.1" in text(app, "#header-title")
        assert text(app, "#header-status").startswith("200 steps")
        assert "finished in 2:05" in text(app, "#header-status")
        assert "NVIDIA H100" in text(app, "#header-device")
        # AND the timeline is drawn exactly with all five CUDA series
        timeline = app.query_one(Timeline)
        assert timeline.data is not None and timeline.data.exact
        assert len(timeline.data.lines) == 6
        assert timeline.draws
        # AND the findings are listed most severe first
        findings = app.query_one(FindingsList).findings
        assert [f.severity for f in findings] == ["error", "warning", "info"]
        # AND the cursor starts on the newest step, whose holders are those of step 150
        assert app.viewport is not None and app.viewport.cursor == 199
        assert (
            app.query_one(HoldersPanel).border_title
            == "holders at step 150 (nearest to 199) · 864.0 MiB"
        )


@drive
async def test_moving_the_cursor_updates_values_and_holders():
    app = make_app()
    async with app.run_test() as pilot:
        await settle(pilot)
        # WHEN the cursor moves to the first step, then three columns right
        await pilot.press("home")
        await settle(pilot)
        assert app.viewport is not None and app.viewport.cursor == 0
        assert (
            app.query_one(HoldersPanel).border_title
            == "holders at step 50 (nearest to 0) · 464.0 MiB"
        )
        await pilot.press("right", "right", "right")
        await settle(pilot)
        # THEN it moved three columns (200 steps over 71 columns: 2 steps a column)
        assert stride(app.viewport, app.query_one(Timeline).buckets) == 2
        assert app.viewport.cursor == 6
        # AND the cursor bar and the holders panel show that step
        assert app.cursor_data is not None and app.cursor_data.step == 6
        assert text(app, "#cursor-bar").startswith("▶ 6 ")
        # WHEN jumping to the newest step
        await pilot.press("end")
        await settle(pilot)
        # THEN the holders are the snapshot nearest it (step 150)
        assert app.query_one(HoldersPanel).border_title.startswith("holders at step 150")


@drive
async def test_zoom_pan_and_whole_run_keys():
    app = make_app()
    async with app.run_test() as pilot:
        await settle(pilot)
        assert app.viewport is not None
        await pilot.press("plus")
        await settle(pilot)
        # THEN zooming in halves the window around the cursor, and the chart follows it
        assert app.viewport.span == 100 and app.viewport.hi == 199
        assert app.query_one(Timeline).data.lo == app.viewport.lo  # type: ignore[union-attr]
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert (app.viewport.lo, app.viewport.hi) == (50, 149)
        await pilot.press("0")
        await settle(pilot)
        assert app.viewport.whole


@drive
async def test_selecting_a_finding_shows_its_source_evidence_and_fix(source_dir: Path):
    app = make_app(search_dirs=[source_dir])
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        # WHEN the first finding (the error) is highlighted
        detail = text(app, "#detail-body")
        # THEN its detail shows the source line at its location, the evidence and the fix
        assert "total_loss keeps every step's autograd graph alive" in detail
        assert "total_loss += loss" in detail
        assert "saved_bytes_last" in detail and "1000.0 MiB" in detail
        assert "total_loss += loss.item()" in detail
        # WHEN the next finding is chosen, whose file is not on this machine
        await pilot.press("down")
        await settle(pilot)
        # THEN the pane says the source is missing instead of failing
        assert "source not found on this machine: missing_file.py" in text(app, "#detail-body")
        assert app.query_one(FindingDetail).border_title == "detail · lingering-step-locals"
        # WHEN Enter is pressed on it
        await pilot.press("enter")
        await settle(pilot)
        # THEN the cursor moves to its first step
        assert app.viewport is not None and app.viewport.cursor == 1


@drive
async def test_number_keys_hide_and_show_series():
    app = make_app()
    async with app.run_test() as pilot:
        await settle(pilot)
        # WHEN the first series of the legend (reserved) is switched off
        await pilot.press("1")
        await pilot.pause()
        # THEN it is no longer drawn and the legend shows it as an empty box
        assert app.query_one(Timeline).hidden == {"reserved_bytes"}
        assert "□ resv" in text(app, "#cursor-bar")
        await pilot.press("1")
        assert app.query_one(Timeline).hidden == frozenset()


@drive
async def test_a_cpu_run_leaves_out_the_cuda_series():
    app = make_app(fake_feed(cpu=True, device_type="cpu", device_name="cpu"))
    async with app.run_test() as pilot:
        await settle(pilot)
        timeline = app.query_one(Timeline)
        assert timeline.data is not None
        assert timeline.data.columns == ("saved_peak_bytes", "saved_bytes", "rss_bytes")
        bar = text(app, "#cursor-bar")
        assert "saved" in bar and "alloc" not in bar


@drive
async def test_following_a_file_that_grows_during_the_test(tmp_path: Path):
    # GIVEN a live run file with 20 committed steps, its writer still open
    path = tmp_path / "live.db"
    info = make_info(ended_at=None, exit_status=None)
    writer = write_run(path, info, make_steps(20), close=False)
    alive = {"value": True}
    app = MemwatchApp(
        FileFeed(path),
        follow=True,
        refresh_s=0.05,
        clock=fixed_clock,
        alive=lambda run: alive["value"] if run.ended_at is None else False,
    )
    try:
        async with app.run_test() as pilot:
            await settle(pilot)
            assert app.snapshot is not None and app.snapshot.last == 19
            assert "● live 1:01" in text(app, "#header-status")
            assert "following" in text(app, "#header-status")
            # WHEN the writer commits 30 more steps, holders and a finding
            for record in make_steps(30, start=20):
                writer.add_step(record)
            writer.add_holders(make_holders(40))
            writer.put_finding(make_findings()[1])
            writer.commit()
            # THEN the dashboard shows them without a key press, cursor on the newest step
            await wait_for(
                pilot,
                lambda: (
                    app.cursor_data is not None
                    and app.cursor_data.step == 49
                    and app.chart is not None
                    and app.chart.hi == 49
                ),
            )
            assert text(app, "#header-status").startswith("50 steps")
            assert [f.kind for f in app.query_one(FindingsList).findings] == ["graph-accumulation"]
            assert app.query_one(HoldersPanel).border_title.startswith("holders at step 40")
            # WHEN the run ends
            writer.close(
                RunInfo(
                    **{
                        **info.to_dict(),
                        "argv": info.argv,
                        "ended_at": info.started_at + 30,
                        "exit_status": 0,
                    }
                )
            )
            # THEN the header says so and the dashboard stops polling
            await wait_for(pilot, lambda: "finished" in text(app, "#header-status"))
            await wait_for(pilot, lambda: app.refresh_timer is None)
    finally:
        writer.close()


@drive
async def test_a_live_run_without_steps_yet_waits_for_them():
    source = FakeFeed(make_info(ended_at=None))
    app = make_app(source, follow=True, refresh_s=0.05)
    async with app.run_test() as pilot:
        await settle(pilot)
        assert app.query_one(Timeline).data is None
        assert "no steps yet" in text(app, "#header-status")
        source.append(make_steps(5))
        await wait_for(pilot, lambda: app.chart is not None and app.chart.hi == 4)


@drive
async def test_the_clock_ticking_while_the_app_closes_raises_nothing():
    # GIVEN a live run on screen
    source = FakeFeed(make_info(ended_at=None))
    source.append(make_steps(5))
    app = make_app(source, follow=True, refresh_s=0.05)
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: app.chart is not None)
        # WHEN the header's widgets are gone, as while the app closes, and the clock ticks
        await app.query_one("#header-title").remove()
        app._tick_clock()
        # THEN nothing is raised, and the rest of the header stays as it was
        assert "live" in text(app, "#header-status")


@drive
async def test_a_corrupt_file_shows_one_line_and_exits_with_status_2(tmp_path: Path):
    # GIVEN a file that is not a run
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"\x00garbage" * 512)
    app = MemwatchApp(path=path)
    async with app.run_test() as pilot:
        await settle(pilot)
        # THEN an error screen names the problem
        assert isinstance(app.screen, ErrorScreen)
        assert "is not a memwatch run file" in app.screen.message
        # WHEN the user quits
        await pilot.press("q")
    # THEN the status is 2
    assert app.return_code == 2


def test_run_dashboard_prints_one_line_for_a_foreign_file(tmp_path: Path, capsys):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert run_dashboard(path, follow=None) == 2
    err = capsys.readouterr().err
    assert err.startswith("memwatch: ") and err.count("\n") == 1 and "Traceback" not in err


@drive
async def test_help_screen_lists_the_keys():
    app = make_app()
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


class FakeChild:
    pid = 31337

    def __init__(self) -> None:
        self.status: int | None = None

    def poll(self) -> int | None:
        return self.status


@drive
async def test_quitting_a_live_run_asks_and_never_stops_it_silently(tmp_path: Path):
    child = FakeChild()
    log = tmp_path / "train.log"
    log.write_text("epoch 1 loss 0.5\n")
    app = make_app(follow=True, child=child, log_path=log)
    async with app.run_test() as pilot:
        await settle(pilot)
        # WHEN quitting while the training runs
        await pilot.press("q")
        # THEN the dashboard asks; escape goes back to it
        assert isinstance(app.screen, QuitLiveScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, QuitLiveScreen)
        # WHEN choosing to leave it running
        await pilot.press("q", "l")
    # THEN the caller learns the choice (and prints where the run records)
    assert app.return_value == "leave"


@drive
async def test_quitting_after_the_training_ended_does_not_ask():
    child = FakeChild()
    child.status = 0
    app = make_app(child=child)
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("q")
    assert app.return_value is None and app.return_code == 0


@drive
async def test_the_output_pane_shows_the_log_tail(tmp_path: Path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"epoch {n}\n" for n in range(100)))
    app = make_app(log_path=log)
    async with app.run_test() as pilot:
        await settle(pilot)
        # WHEN the user asks for the script's output
        await pilot.press("l")
        await pilot.pause()
        # THEN its newest lines replace the panels below the timeline
        shown = text(app, "#log")
        assert "epoch 99" in shown and "epoch 0\n" not in shown
        assert not app.query_one("#lower").display
        await pilot.press("l")
        await pilot.pause()
        assert app.query_one("#lower").display


@drive
async def test_r_switches_between_rank_files(tmp_path: Path):
    ranks = []
    for rank in (0, 1):
        path = tmp_path / f"train-20240101-000000-rank{rank}.db"
        write_run(path, make_info(rank=rank, world_size=2), make_steps(10 + rank))
        ranks.append(path)
    app = MemwatchApp(FileFeed(ranks[0]), path=ranks[0], ranks=ranks, clock=fixed_clock)
    async with app.run_test() as pilot:
        await settle(pilot)
        assert "rank 0/2" in text(app, "#header-device")
        await pilot.press("r")
        await settle(pilot)
        assert "rank 1/2" in text(app, "#header-device")
        assert app.snapshot is not None and app.snapshot.last == 10
        assert "timeline: rank 1 of 2" in text(app, "#header-status")


class VanishingSource(FakeFeed):
    """A run file that becomes unreadable after the first read (deleted, overwritten)."""

    def __init__(self) -> None:
        super().__init__(make_info(ended_at=None, exit_status=None), make_steps(10))
        self.broken = False

    def bounds(self):  # type: ignore[no-untyped-def]
        if self.broken:
            raise RunFileError("run.db could not be read (disk I/O error)")
        return super().bounds()


@drive
async def test_a_file_that_breaks_while_followed_stops_following_with_a_message():
    source = VanishingSource()
    app = make_app(source, follow=True, refresh_s=0.05)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        assert app.refresh_timer is not None
        # WHEN the file can no longer be read
        source.broken = True
        await wait_for(pilot, lambda: app.refresh_timer is None)
        # THEN the dashboard keeps what it showed, and says why it stopped following
        assert app.snapshot is not None and app.snapshot.last == 9
        assert any("disk I/O error" in n.message for n in app._notifications)


@drive
async def test_a_run_whose_writer_died_shows_as_stopped():
    # GIVEN a run without a recorded end whose process is gone (kill -9)
    source = fake_feed(ended_at=None, exit_status=None)
    app = make_app(source, follow=True, alive=lambda info: False)
    async with app.run_test() as pilot:
        await settle(pilot)
        # THEN the header says so, timed to the last recorded step, and nothing is polled
        assert "◆ stopped after 1:40 (no end recorded)" in text(app, "#header-status")
        assert app.refresh_timer is None


def two_rank_directory(tmp_path: Path) -> list[Path]:
    """Rank 0 flat, rank 1 leaking 4 MiB of autograd graph a step (with its finding)."""
    flat = [
        replace(s, saved_bytes=200 * MiB, saved_stale_bytes=0, allocated_bytes=GiB)
        for s in make_steps(60)
    ]
    leak = [replace(f, rank=1) for f in make_findings() if f.kind == "graph-accumulation"]
    paths = [tmp_path / f"train-20240101-000000-rank{r}.db" for r in (0, 1)]
    write_run(paths[0], make_info(rank=0, world_size=2), flat)
    write_run(paths[1], make_info(rank=1, world_size=2), make_steps(60), (), leak)
    return paths


@drive
async def test_a_run_directory_opens_on_every_ranks_findings(tmp_path: Path):
    # GIVEN a two-rank run directory whose rank 1 leaks, rank 0 being clean
    ranks = two_rank_directory(tmp_path)
    app = MemwatchApp(FileFeed(ranks[0]), path=ranks[0], ranks=ranks, clock=fixed_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        # WHEN the dashboard opens the directory (on rank 0's timeline)
        await wait_for(pilot, lambda: app.merged is not None)
        await settle(pilot)
        # THEN the findings list holds rank 1's leak and the rank-imbalance finding,
        # each labelled by rank, not rank 0's "no problems found"
        findings = app.query_one(FindingsList).findings or ()
        assert {(f.kind, f.rank) for f in findings} == {
            ("graph-accumulation", 1),
            ("rank-imbalance", 1),
        }
        assert "all ranks" in app.query_one(FindingsList).border_title
        # AND a per-rank table gives each rank's peaks and growth
        table = str(app.query_one(RanksPanel).render())
        assert "+4.0 MiB" in table and "rank" in table
        assert "timeline: rank 0 of 2" in text(app, "#header-status")
        # WHEN the leak is chosen with Enter
        keys = [f.kind for f in findings]
        app.query_one(FindingsList).highlighted = keys.index("graph-accumulation")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        # THEN the timeline switches to rank 1 with the cursor on the finding's first step
        assert "timeline: rank 1 of 2" in text(app, "#header-status")
        assert app.viewport is not None and app.viewport.cursor == 3
        assert app.query_one(Timeline).focus_pane == "autograd"


@drive
async def test_a_run_opened_from_another_directory_shows_its_source(
    tmp_path: Path, source_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    # GIVEN a run recorded in source_dir, its finding at the relative path "train.py",
    # the run file kept elsewhere, and the dashboard started from a third directory
    path = tmp_path / "artifacts" / "run.db"
    write_run(path, make_info(cwd=str(source_dir)), make_steps(10), (), make_findings())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    app = MemwatchApp(FileFeed(path), path=path, clock=fixed_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        # THEN the error's detail shows its source line, found through the run's cwd
        detail = text(app, "#detail-body")
        assert "source not found" not in detail
        assert "total_loss += loss" in detail


@drive
async def test_moving_the_cursor_keeps_the_values_until_the_new_ones_arrive():
    app = make_app()
    async with app.run_test() as pilot:
        await settle(pilot)
        before = text(app, "#cursor-bar")
        assert "6■" in before and " - " not in before
        # WHEN the cursor moves, before the worker has read the new step's values
        app.action_cursor(-1)
        shown = text(app, "#cursor-bar")
        # THEN the bar names the new step and still shows the previous values (dimmed),
        # never blanks
        assert shown.startswith("▶ 197 ")
        assert shown.split(" ", 2)[2] == before.split(" ", 2)[2]
        await settle(pilot)
        assert app.cursor_data is not None and app.cursor_data.step == 197
