"""Layout fixed as SVG snapshots at 80x24, 120x40 and 160x50 (fake runs, fixed clock).

Update after an intended layout change with ``pytest tests/tui --snapshot-update`` and look
at the SVGs in ``__snapshots__/`` before committing them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.terminal_theme import MONOKAI
from textual._ansi_theme import ALABASTER
from textual.pilot import Pilot

from tests.tui.runs import fake_feed, make_app, settle
from tests.tui.test_visible import eval_spike_run, retain_graph_run

pytestmark = pytest.mark.timeout(60)


async def settled(pilot: Pilot[object]) -> None:
    await settle(pilot)


def test_finished_run_at_80x24(snap_compare, source_dir: Path):
    # GIVEN a finished CUDA run with three findings; the error's source is on disk
    app = make_app(search_dirs=[source_dir])
    # THEN the header, timeline, legend, findings, holders and detail all fit in 80x24
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled)


def test_zoomed_cursor_and_finding_detail_at_120x40(snap_compare, source_dir: Path):
    # GIVEN the same run at 120x40, cursor on step 120 (a peak spike), zoomed in 4x
    app = make_app(search_dirs=[source_dir])

    async def zoom_in(pilot: Pilot[object]) -> None:
        await settle(pilot)
        await pilot.press("home", *["shift+right"] * 12, "plus", "plus")
        await settle(pilot)

    # THEN the cursor line, the window's range and the error's source excerpt show
    assert snap_compare(app, terminal_size=(120, 40), run_before=zoom_in)


def test_live_cpu_run_at_80x24(snap_compare, source_dir: Path):
    # GIVEN a CPU run still recording (no CUDA series), followed
    source = fake_feed(
        cpu=True,
        device_type="cpu",
        device_name="cpu",
        ended_at=None,
        exit_status=None,
        device_total_bytes=None,
    )
    app = make_app(source, follow=True, search_dirs=[source_dir])
    # THEN only autograd-saved and RSS are drawn, and the header says live and following
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled)


def test_help_screen_at_80x24(snap_compare):
    app = make_app()

    async def help_screen(pilot: Pilot[object]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=(80, 24), run_before=help_screen)


def test_light_theme_at_80x24(snap_compare, source_dir: Path):
    # GIVEN the finished run, switched to light colours with "t"
    app = make_app(search_dirs=[source_dir])

    async def light(pilot: Pilot[object]) -> None:
        await settle(pilot)
        await pilot.press("t")
        await pilot.pause()

    # THEN every panel, series and the cursor use the light palette
    assert snap_compare(app, terminal_size=(80, 24), run_before=light)


@pytest.mark.parametrize("terminal", ["dark-terminal", "light-terminal"])
@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
def test_both_themes_on_both_terminal_backgrounds(snap_compare, source_dir, theme, terminal):
    # GIVEN the finished run in each theme, in a terminal with a dark or a light background
    app = make_app(search_dirs=[source_dir])

    async def themed(pilot: Pilot[object]) -> None:
        pilot.app.ansi_theme_dark = pilot.app.ansi_theme_light = (
            MONOKAI if terminal == "dark-terminal" else ALABASTER
        )
        pilot.app.theme = theme
        await settle(pilot)

    # THEN every panel is readable: each cell names its colours (see test_colours.py)
    assert snap_compare(app, terminal_size=(80, 24), run_before=themed)


def test_retain_graph_leak_on_a_cpu_run_at_80x24(snap_compare):
    # GIVEN a CPU run recorded without flags whose autograd-saved memory grows
    # THEN the growth climbs through the autograd pane, RSS has its own pane
    assert snap_compare(make_app(retain_graph_run()), terminal_size=(80, 24), run_before=settled)


def test_evaluation_spikes_on_a_cpu_run_at_160x50(snap_compare):
    # GIVEN a CPU run whose evaluation steps peak inside the step, at 160x50
    # THEN each spike shows, marked on the step axis, and the series span the whole width
    assert snap_compare(make_app(eval_spike_run()), terminal_size=(160, 50), run_before=settled)


def test_finding_detail_full_screen_at_80x24(snap_compare, source_dir: Path):
    app = make_app(search_dirs=[source_dir])

    async def full(pilot: Pilot[object]) -> None:
        await settle(pilot)
        await pilot.press("d")
        await settle(pilot)

    # THEN title, fix, place, the source excerpt and the evidence fit without scrolling
    assert snap_compare(app, terminal_size=(80, 24), run_before=full)
