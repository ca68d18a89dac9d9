"""How the ``memwatch`` process ends: a closed pipe, and Ctrl-C during ``memwatch run``.

These run the real command (``python -m memwatch``) in a child process: what is checked
is what a shell or a parent script sees (the exit status, a signal death, the streams).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memwatch.cli import BROKEN_PIPE_STATUS, main
from tests.helpers import SAMPLES

_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pipe") / "clean.db"
    status = main(["run", "--no-report", "--out", str(out), str(SAMPLES / "clean_training.py")])
    assert status == 0
    return out


def into_a_closed_pipe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``memwatch ARGS | head -0``: stdout is a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "memwatch", *args],
            cwd=cwd,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=_ENV,
            timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "command",
    [
        ["report"],
        ["report", "--format", "json"],
        ["check", "--fail-on", "warning"],
        ["export", "--format", "html"],
        ["diff", "RUN"],
    ],
    ids=["report", "report-json", "check", "export", "diff"],
)
def test_a_reader_that_went_away_ends_the_command_quietly_with_sigpipes_status(
    recorded: Path, command: list[str]
) -> None:
    # GIVEN a recorded run, WHEN a command's output goes into a pipe nobody reads any more
    name, *rest = command
    rest = [str(recorded) if arg == "RUN" else arg for arg in rest]
    result = into_a_closed_pipe(name, str(recorded), *rest, cwd=recorded.parent)
    # THEN it ends as a shell's SIGPIPE death reads (141), distinct from check's 1 and bad
    # input's 2, with no traceback and nothing on stderr
    assert result.returncode == BROKEN_PIPE_STATUS == 141
    assert result.stderr == ""


LOOP = textwrap.dedent(
    """
    import time, torch
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(100000):
        opt.zero_grad(); model(torch.randn(2, 4)).sum().backward(); opt.step()
        if i == 5:
            print("ready", flush=True)
        time.sleep(0.01)
    """
)


def interrupted(command: list[str], cwd: Path) -> tuple[int, str, str]:
    """Start ``command``, wait for the loop's "ready", press Ctrl-C (SIGINT), wait."""
    child = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_ENV,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:  # never leave a training running behind a failed test
            child.kill()
            child.wait()
    return child.returncode, out, err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_a_run_reports_then_dies_by_sigint_as_python_does(tmp_path: Path) -> None:
    # GIVEN a looping training script
    (tmp_path / "loop.py").write_text(LOOP)
    # WHEN plain python and memwatch run it, and each is interrupted by Ctrl-C
    python_status, _, python_err = interrupted([sys.executable, "loop.py"], tmp_path)
    status, out, err = interrupted(
        [sys.executable, "-m", "memwatch", "run", "--out", "r.db", "loop.py"], tmp_path
    )
    # THEN both die by SIGINT (the parent sees a signal death, not exit 130)
    assert python_status == -signal.SIGINT
    assert status == python_status
    # AND memwatch printed the user's KeyboardInterrupt, and its report after it
    assert "KeyboardInterrupt" in python_err and "KeyboardInterrupt" in err
    assert "memwatch" in out + err and "r.db" in out + err
    # AND the run file records the end (shell status 130) and the steps taken
    from memwatch.store import RunReader

    with RunReader(tmp_path / "r.db") as reader:
        info = reader.info()
        assert info.exit_status == 130 and info.ended_at is not None
        assert reader.step_count() >= 6


def test_ctrl_c_in_main_called_as_a_function_returns_130(tmp_path: Path) -> None:
    # GIVEN a script that raises KeyboardInterrupt, run through main() in-process
    (tmp_path / "stop.py").write_text("raise KeyboardInterrupt\n")
    # WHEN main() returns, THEN it gives python's status and this process lives on
    assert (
        main(["run", "--no-report", "--out", str(tmp_path / "r.db"), str(tmp_path / "stop.py")])
        == 130
    )
