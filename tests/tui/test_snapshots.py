"""Layout fixed as SVG snapshots at 80x24 and 120x40 (fake runs, fixed clock: deterministic).

Update after an intended layout change with ``pytest tests/tui --snapshot-update`` and look
at the SVGs in ``__snapshots__/`` before committing them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.tui.runs import fake_feed, make_app, settle

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
