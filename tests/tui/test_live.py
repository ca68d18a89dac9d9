"""``memwatch run --live``: the child's life cycle around the dashboard (stand-in children)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memwatch.commands.live import live_session, wait_for_run
from tests.tui.runs import REPO, make_info, write_run

pytestmark = pytest.mark.timeout(60)

#: A stand-in for ``python -m memwatch run``: writes a run file, prints, then waits.
WRITER = textwrap.dedent(
    """
    import sys, time
    from tests.tui.runs import make_info, make_steps, write_run
    print("training starts", flush=True)
    writer = write_run(sys.argv[1], make_info(ended_at=None), make_steps(5), close=False)
    time.sleep(float(sys.argv[2]))
    writer.close()
    """
)


def python(*code_and_args: str) -> list[str]:
    return [sys.executable, "-c", *code_and_args]


@pytest.fixture(autouse=True)
def importable_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def test_a_child_that_exits_before_recording_returns_its_status_and_output(tmp_path: Path):
    # GIVEN a script that fails at import time
    out = io.StringIO()
    command = python("import sys; print('ImportError: no module named foo'); sys.exit(3)")
    # WHEN run live
    status = live_session(command, tmp_path / "run.db", tmp_path / "run.log", out=out)
    # THEN its status comes back, with the end of its output, and no dashboard was opened
    assert status == 3
    assert "exited with status 3 before recording started" in out.getvalue()
    assert "ImportError: no module named foo" in out.getvalue()


def test_leaving_the_training_running_says_where_it_records(tmp_path: Path):
    run, log = tmp_path / "run.db", tmp_path / "run.log"
    seen: dict[str, object] = {}

    def dashboard(child: subprocess.Popen[bytes], run_path: Path, log_path: Path) -> str:
        seen["pid"], seen["run"] = child.pid, run_path
        seen["child"] = child
        return "leave"

    out = io.StringIO()
    # WHEN the user quits the dashboard and leaves the training running
    status = live_session(python(WRITER, str(run), "30"), run, log, dashboard, out)
    child: subprocess.Popen[bytes] = seen["child"]  # type: ignore[assignment]
    try:
        # THEN the training still runs, and the user is told its pid and files
        assert status == 0
        assert child.poll() is None
        message = out.getvalue()
        assert f"pid {child.pid}" in message and str(run) in message and str(log) in message
        assert f"memwatch tui {run}" in message
        assert "training starts" in log.read_text()
    finally:
        child.kill()
        child.wait()


def test_stopping_the_training_interrupts_it_and_returns_its_status(tmp_path: Path):
    run, log = tmp_path / "run.db", tmp_path / "run.log"
    out = io.StringIO()
    status = live_session(python(WRITER, str(run), "30"), run, log, lambda *args: "stop", out)
    # THEN the child got Ctrl+C and ended from it (Python exits by SIGINT: 128 + 2)
    assert status == 130
    assert "stopping the training" in out.getvalue()


def test_a_child_that_finished_while_watched_returns_its_status(tmp_path: Path):
    run, log = tmp_path / "run.db", tmp_path / "run.log"

    def dashboard(child: subprocess.Popen[bytes], run_path: Path, log_path: Path) -> None:
        child.wait()

    status = live_session(python(WRITER, str(run), "0"), run, log, dashboard, io.StringIO())
    assert status == 0


def test_a_stale_file_at_the_run_path_is_not_taken_for_the_new_run(tmp_path: Path):
    # GIVEN a run file left by an earlier run at the same --out path
    run = tmp_path / "run.db"
    write_run(run, make_info())
    before = (run.stat().st_ino, run.stat().st_ctime_ns)
    # WHEN a child that never writes is waited for
    child = subprocess.Popen(python("import time; time.sleep(0.3)"))
    # THEN the old file does not count as its run
    assert wait_for_run(child, run, before, poll_s=0.02) is False
    child.wait()


def test_the_child_gets_its_own_session(tmp_path: Path):
    # Ctrl+C typed in the dashboard goes to the dashboard's process group only.
    run, log = tmp_path / "run.db", tmp_path / "run.log"
    groups: dict[str, int] = {}

    def dashboard(child: subprocess.Popen[bytes], run_path: Path, log_path: Path) -> str:
        groups["child"] = os.getpgid(child.pid)
        child.wait()
        return "leave"

    # (the child lingers a little: a child that already exited has no process group)
    live_session(python(WRITER, str(run), "2"), run, log, dashboard, io.StringIO())
    assert groups["child"] != os.getpgid(0)
