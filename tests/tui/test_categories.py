"""Memory by category on the timeline: a stacked pane over the shared step axis, held
between the strided rows, labelled when estimated, absent for runs recorded without."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from memwatch_tui.app import MemwatchApp
from memwatch_tui.chart import draw, plain
from memwatch_tui.feed import FakeFeed, FileFeed
from memwatch_tui.model import RunModel
from memwatch_tui.view import ChartData, categories_at, category_lines
from memwatch_tui.widgets import CursorBar, Timeline
from textual.pilot import Pilot

from memwatch.records import MemoryCategories
from tests.tui.runs import (
    MiB,
    drive,
    fake_feed,
    make_app,
    make_findings,
    make_holders,
    make_info,
    make_steps,
    never_alive,
    settle,
    write_run,
)

#: Recorded like memwatch.collect.categories: every step at first, then every 16th.
STRIDED = [*range(8), *range(16, 200, 16)]


def make_categories(steps: list[int] = STRIDED, estimated: bool = True) -> list[MemoryCategories]:
    """A CPU run whose activations grow 4 MiB a step (the retain-graph leak)."""
    return [
        MemoryCategories(
            step=s,
            parameters_bytes=2 * MiB,
            gradients_bytes=2 * MiB,
            optimizer_bytes=4 * MiB,
            activations_bytes=200 * MiB + s * 4 * MiB,
            other_bytes=None if estimated else 64 * MiB,
            total_bytes=None if estimated else 272 * MiB + s * 4 * MiB,
            basis="estimated" if estimated else "tracked-tensors",
        )
        for s in steps
    ]


def categories_feed(n: int = 200, estimated: bool = True) -> FakeFeed:
    return FakeFeed(
        make_info(device_type="cpu", device_name="cpu", device_total_bytes=None),
        make_steps(n, cpu=True, spike_at=120),
        make_holders(50) + make_holders(150),
        make_findings(),
        label="memwatch-runs/train-20231114-221320.db",
        categories=make_categories([s for s in STRIDED if s < n], estimated),
    )


def test_category_lines_are_stacked_and_held_until_the_next_recorded_row():
    # GIVEN rows recorded at steps 0, 16 and 32 only
    rows = make_categories([0, 16, 32])
    # WHEN they become lines for the window 0..40
    lines = {line.column: line for line in category_lines(rows, 0, 40)}
    # THEN the estimated run has no "other" layer, and layers stack bottom-up
    assert list(lines) == ["cat_parameters", "cat_gradients", "cat_optimizer", "cat_activations"]
    top = lines["cat_activations"]
    assert top.ys[0] == (8 + 200) * MiB
    # AND each value is held flat up to the next row's step, where it steps up
    assert top.xs == (0.0, 16.0, 16.0, 32.0, 32.0)
    assert top.ys[1] == top.ys[0] and top.ys[2] == top.ys[0] + 64 * MiB
    # AND nothing is drawn past the last recorded row (step 32, not the window's 40)
    assert max(top.xs) == 32


def test_the_row_in_force_at_a_step_is_the_last_recorded_at_or_before_it():
    rows = make_categories([0, 16, 32])
    assert categories_at(rows, 20).step == 16
    assert categories_at(rows, 32).step == 32
    assert categories_at(rows[1:], 3) is None


def test_the_chart_gets_a_categories_pane_labelled_estimated_only_when_it_has_rows():
    # GIVEN the same window with and without category rows
    rows = tuple(make_categories([s for s in STRIDED if s < 60]))
    feed = categories_feed(60)
    plain_chart = RunModel(feed, alive=never_alive).chart(0, 59, 74)
    assert plain_chart.categories == rows
    without = ChartData(plain_chart.lo, plain_chart.hi, plain_chart.lines)
    # WHEN both are drawn at 80 columns
    text = plain(draw(plain_chart, 59, 80, 16))
    text_without = plain(draw(without, 59, 80, 16))
    # THEN the pane, its "estimated" label and its key show only with rows
    assert "by category · estimated · held" in text and "■activ" in text
    assert "category" not in text_without
    # AND a run with a real total has an "other" layer and is not called estimated
    exact = ChartData(0, 59, plain_chart.lines, categories=tuple(make_categories(estimated=False)))
    exact_text = plain(draw(exact, 59, 80, 16))
    assert "■other" in exact_text and "estimated" not in exact_text


def test_a_run_file_without_the_categories_table_reads_as_no_categories(tmp_path: Path):
    # GIVEN a run file written before schema 1.2 (no categories table)
    path = tmp_path / "old.db"
    write_run(path, make_info(device_type="cpu"), make_steps(40, cpu=True))
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE categories")
    # WHEN the dashboard's model reads its chart
    feed = FileFeed(path)
    chart = RunModel(feed, alive=never_alive).chart(0, 39, 74)
    # THEN it has no categories and the legend has no entry for them
    assert chart.categories == () and "categories" not in chart.columns
    feed.close()


def test_a_run_file_with_categories_reads_a_window_led_by_the_held_row(tmp_path: Path):
    # GIVEN a run file with strided category rows
    path = tmp_path / "cat.db"
    writer = write_run(path, make_info(device_type="cpu"), make_steps(200, cpu=True), close=False)
    for row in make_categories():
        writer.add_categories(row)
    writer.commit()
    writer.close(make_info(device_type="cpu"))
    feed = FileFeed(path)
    # WHEN the window 40..100 is read
    rows = feed.categories(40, 100, 100)
    # THEN it starts with the row held into the window (32) and holds the rows inside
    assert [r.step for r in rows] == [32, 48, 64, 80, 96]
    # AND a window with more rows than points is read as the last row of each bucket
    # (the value held at the bucket's end), led by the held row, the newest row included
    sampled = feed.categories(40, 199, 6)
    assert [r.step for r in sampled] == [32, 64, 96, 128, 160, 192]
    feed.close()


def test_a_bad_category_value_is_one_clear_error(tmp_path: Path):
    # GIVEN a run file whose category row holds text where bytes belong
    path = tmp_path / "bad.db"
    writer = write_run(path, make_info(device_type="cpu"), make_steps(10, cpu=True), close=False)
    writer.add_categories(make_categories([0])[0])
    writer.commit()
    writer.close(make_info(device_type="cpu"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE categories SET activations_bytes = 'lots'")
    # THEN reading it raises RunFileError (one memwatch: line), never a traceback
    from memwatch.errors import RunFileError

    with pytest.raises(RunFileError, match=r"not a valid memwatch run file.*activations_bytes"):
        FileFeed(path).categories(0, 9, 10)


@drive
async def test_number_key_hides_and_shows_the_category_pane():
    # GIVEN a CPU run with categories at 80x24
    app: MemwatchApp = make_app(categories_feed())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        timeline = app.query_one(Timeline)
        bar = str(app.query_one(CursorBar).render())
        # THEN the legend numbers the stack after the three series, with its estimate
        assert "4■" in bar and "cat" in bar and "est." in bar
        assert "by category" in plain(draw(timeline.data, 199, 80, 16))
        # WHEN its number is pressed
        await pilot.press("4")
        await settle(pilot)
        # THEN the stack is hidden (an empty box in the legend) and pressing again shows it
        assert "categories" in timeline.hidden
        assert "4□" in str(app.query_one(CursorBar).render())
        await pilot.press("4")
        await settle(pilot)
        assert "categories" not in timeline.hidden


@drive
async def test_the_legend_names_the_held_row_between_recorded_steps():
    # GIVEN the cursor on step 20, between the rows of steps 16 and 32
    app: MemwatchApp = make_app(categories_feed())
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("home", *["right"] * 20)
        await settle(pilot)
        bar = str(app.query_one(CursorBar).render())
        # THEN the value shown is step 16's, and the bar says so
        assert "≤16" in bar and "act 264M" in bar


def test_old_cpu_run_without_categories_at_80x24(snap_compare):
    # GIVEN a CPU run recorded without categories (older run files)
    app = make_app(fake_feed(cpu=True, device_type="cpu", device_name="cpu"))
    # THEN the timeline has no categories pane and the legend no fourth entry
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_cpu_run_with_categories_at_80x24(snap_compare):
    # GIVEN a CPU run with estimated, strided categories
    app = make_app(categories_feed())
    # THEN a fourth pane stacks them, labelled estimated and held, with its key
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_cpu_run_with_categories_at_160x50(snap_compare):
    # GIVEN the same run on a wide terminal, cursor between two recorded rows
    app = make_app(categories_feed())

    async def between_rows(pilot: Pilot[object]) -> None:
        await settle(pilot)
        await pilot.press("home", *["right"] * 20)
        await settle(pilot)

    # THEN the flat holds between rows show and the legend lists each layer at step 16
    assert snap_compare(app, terminal_size=(160, 50), run_before=between_rows)
