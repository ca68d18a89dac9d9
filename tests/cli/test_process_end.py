"""How the ``memwatch`` process ends: a closed pipe.

These run the real command (``python -m memwatch``) in a child process: what is checked
is what a shell or a parent script sees (the exit status, a signal death, the streams).
"""

from __future__ import annotations

import os
import subprocess
import sys
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
