"""Fixtures for the dashboard tests: a recorded run file and the source it points at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tui.runs import (
    SOURCE_LINES,
    STARTED,
    make_findings,
    make_holders,
    make_info,
    make_steps,
    write_run,
)


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A directory holding the ``train.py`` the findings point at, older than the run."""
    directory = tmp_path / "src"
    directory.mkdir()
    path = directory / "train.py"
    path.write_text("\n".join(SOURCE_LINES) + "\n")
    os.utime(path, (STARTED - 3600, STARTED - 3600))
    return directory


@pytest.fixture
def recorded_run(tmp_path: Path) -> Path:
    """A finished run file: 200 CUDA steps, holders at steps 50 and 150, three findings."""
    path = tmp_path / "runs" / "train-20231114-221320.db"
    write_run(
        path,
        make_info(),
        make_steps(200, spike_at=120),
        make_holders(50) + make_holders(150),
        make_findings(),
    )
    return path
