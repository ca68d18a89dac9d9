"""A valid SQLite run file holding bad values: one ``memwatch: ...`` line and exit 2 (or an
error screen / an in-app message), never a traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from memwatch_tui.app import MemwatchApp, run_dashboard
from memwatch_tui.screens import ErrorScreen

from tests.tui.runs import (
    drive,
    fixed_clock,
    make_findings,
    make_holders,
    make_info,
    make_steps,
    settle,
    write_run,
)

pytestmark = pytest.mark.timeout(60)


def recorded(tmp_path: Path, close: bool = True) -> Path:
    path = tmp_path / "run.db"
    write_run(path, make_info(), make_steps(40), make_holders(39), make_findings(), close=close)
    return path


def spoil(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(sql)


#: Bad values in what the dashboard reads before it starts (run, findings, newest step).
SHOWN_FIRST = {
    "malformed finding JSON": "UPDATE findings SET data = '{not json'",
    "text as a finding's step": (
        "UPDATE findings SET data = json_set(data, '$.first_step', 'soon')"
    ),
    "text as a location's line": (
        'UPDATE findings SET data = json_set(data, \'$.location\', json(\'{"file": "a.py", '
        '"line": "x", "function": "f"}\')) WHERE kind = \'graph-accumulation\''
    ),
    "a list as the evidence": (
        "UPDATE findings SET data = json_set(data, '$.evidence', json('[1]'))"
    ),
    "text as the start time": (
        "UPDATE meta SET value = json_set(value, '$.started_at', 'soon') WHERE key = 'run'"
    ),
    "a number as the script": (
        "UPDATE meta SET value = json_set(value, '$.script', 7) WHERE key = 'run'"
    ),
    "text in the newest step's RSS": "UPDATE steps SET rss_bytes = 'lots' WHERE step = 39",
    "a huge float as saved bytes": "UPDATE steps SET saved_bytes = 9.9e300 WHERE step = 39",
    "text as a holder's size": "UPDATE holders SET bytes = 'big'",
    "malformed run JSON": "UPDATE meta SET value = '{' WHERE key = 'run'",
}


@pytest.mark.parametrize("case", SHOWN_FIRST)
def test_a_bad_value_gives_one_line_and_status_2(
    case: str, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    # GIVEN a run file that SQLite reads fine, with one bad value
    path = recorded(tmp_path)
    # (the dashboard must refuse before it takes over the terminal)
    monkeypatch.setattr(MemwatchApp, "run", lambda self: pytest.fail("the app started"))
    spoil(path, SHOWN_FIRST[case])
    before = path.read_bytes()
    # WHEN the dashboard is asked to open it
    status = run_dashboard(path, follow=None)
    # THEN it says so in one line and exits with 2, without touching the file
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("memwatch: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert path.read_bytes() == before


@drive
async def test_a_bad_value_deeper_in_the_steps_shows_the_error_screen(tmp_path: Path):
    # GIVEN a bad value in a step the first checks do not read
    path = recorded(tmp_path)
    spoil(path, "UPDATE steps SET rss_bytes = 'lots' WHERE step = 7")
    app = MemwatchApp(path=path, clock=fixed_clock)
    async with app.run_test() as pilot:
        # WHEN the timeline reads it
        await settle(pilot)
        # THEN an error screen names the file and the value, and quitting exits with 2
        assert isinstance(app.screen, ErrorScreen)
        assert "bad value" in app.screen.message
        await pilot.press("q")
    assert app.return_code == 2


@drive
async def test_a_value_that_goes_bad_while_following_is_reported_in_the_app(tmp_path: Path):
    # GIVEN a live run being followed
    path = recorded(tmp_path, close=False)
    app = MemwatchApp(
        path=path, follow=True, refresh_s=0.05, clock=fixed_clock, alive=lambda info: True
    )
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        assert app.refresh_timer is not None
        # WHEN a step with a bad value is committed
        spoil(
            path,
            "INSERT INTO steps SELECT step + 1, started_at, duration_s, boundary, "
            "allocated_bytes, reserved_bytes, peak_allocated_bytes, device_used_bytes, "
            "saved_bytes, saved_peak_bytes, saved_stale_bytes, 'lots', forward_calls, "
            "backward_calls, oom_events, measured FROM steps WHERE step = 39",
        )
        for _ in range(100):
            await pilot.pause(0.05)
            if app.refresh_timer is None:
                break
        # THEN following stops with a message naming the bad value; what was shown stays
        assert app.refresh_timer is None
        assert any(
            "not a valid memwatch run file" in n.message and "rss_bytes" in n.message
            for n in app._notifications
        )
        assert app.snapshot is not None and app.snapshot.last is not None
