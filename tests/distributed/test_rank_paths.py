"""Where each rank writes: one file per rank, all ranks of a launch in one directory."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from memwatch.store.paths import rank_of_file, resolve_run, run_file_path, shared_run_stamp
from tests.distributed.records import rank_info, steps, write_run


@pytest.fixture
def torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables torchrun sets, as seen by a worker whose parent is the launcher."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)


def test_out_directory_gets_one_file_per_rank_named_by_rank(tmp_path: Path) -> None:
    # GIVEN --out RUN_DIR (not existing yet, no .db suffix) under torchrun
    out = tmp_path / "runs" / "ddp"
    # WHEN ranks 0 and 1 choose their files
    paths = [run_file_path(out, "samples/ddp_training.py", rank=r) for r in (0, 1)]
    # THEN both live in RUN_DIR, named by rank
    assert paths == [out / "ddp_training-rank0.db", out / "ddp_training-rank1.db"]


def test_out_file_under_torchrun_is_split_per_rank(tmp_path: Path) -> None:
    # GIVEN --out run.db, which two ranks must never share
    # WHEN rank 3 chooses its file
    # THEN it writes run-rank3.db beside it
    assert run_file_path(tmp_path / "run.db", "t.py", rank=3) == tmp_path / "run-rank3.db"


def test_default_directory_is_shared_by_the_ranks_of_one_launch(
    tmp_path: Path, torchrun_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN no --out, under torchrun
    monkeypatch.chdir(tmp_path)
    # WHEN two ranks choose their files (this process's parent plays the launcher)
    first = run_file_path(None, "train.py", rank=0)
    time.sleep(1.1)  # a second later: their own clocks would disagree
    second = run_file_path(None, "train.py", rank=1)
    # THEN both are memwatch-runs/<stem>-<launcher start>/<stem>-<launcher start>-rank<N>.db
    assert first.parent == second.parent
    assert re.fullmatch(r"memwatch-runs/train-\d{8}-\d{6}", first.parent.as_posix())
    assert first.name == f"{first.parent.name}-rank0.db"
    assert second.name == f"{first.parent.name}-rank1.db"


def test_stamp_outside_torchelastic_is_the_current_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN RANK set by some other launcher (no TORCHELASTIC_RUN_ID)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    # WHEN the stamp is taken
    before = time.strftime("%Y%m%d-%H%M%S")
    stamp = shared_run_stamp()
    after = time.strftime("%Y%m%d-%H%M%S")
    # THEN it is now, not the start time of whatever process started us
    assert before <= stamp <= after


def test_a_torchelastic_restart_keeps_the_failed_attempts_files(
    tmp_path: Path, torchrun_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the second attempt after a restart
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    # WHEN rank 0 chooses its file in RUN_DIR
    path = run_file_path(tmp_path, "train.py", rank=0)
    # THEN it does not overwrite attempt 0's file, and still reads as rank 0
    assert path == tmp_path / "train-rank0-restart1.db"
    assert rank_of_file(path) == (0, 1)


def test_a_single_process_keeps_out_as_given_or_gets_a_name_inside_a_directory(
    tmp_path: Path,
) -> None:
    # GIVEN no rank (plain `memwatch run`)
    # WHEN --out is a file path, or an existing directory
    as_file = run_file_path(tmp_path / "x", "train.py")
    inside = run_file_path(tmp_path, "train.py")
    # THEN a file path is used as is, and a directory gets a fresh default name
    assert as_file == tmp_path / "x"
    assert inside.parent == tmp_path and inside.name.startswith("train-")
    assert rank_of_file(inside) is None


def test_report_without_a_path_opens_the_newest_rank_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an older single-process run and a newer rank directory in ./memwatch-runs
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "memwatch-runs"
    old = write_run(runs / "train-20240101-000000.db", rank_info(None, None), steps(2))
    os.utime(old, (1, 1))
    launch = runs / "train-20240102-000000"
    launch.mkdir()
    for r in (0, 1):
        write_run(launch / f"train-20240102-000000-rank{r}.db", rank_info(r), steps(2))
    # WHEN the run is resolved with no argument
    # THEN the rank directory is the newest run
    assert resolve_run(None) == Path("memwatch-runs") / launch.name


def test_a_watch_inside_a_ddp_script_records_its_rank_in_a_file_named_by_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from memwatch import memwatch
    from memwatch.store import RunReader

    # GIVEN rank 1 of 2 as torchrun describes it, and `with memwatch(out=RUN_DIR):` in the script
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # WHEN it trains a few steps under the watch
    with memwatch(out=tmp_path / "run", script="train.py") as mw:
        for _ in range(3):
            model(torch.randn(2, 4)).sum().backward()
            optimizer.step()
    # THEN its file is RUN_DIR/train-rank1.db and records rank, world size, local rank, host
    assert mw.run_path == tmp_path / "run" / "train-rank1.db"
    with RunReader(mw.run_path) as reader:
        info = reader.info()
        assert (info.rank, info.world_size, info.local_rank) == (1, 2, 1)
        assert info.host and reader.step_count() == 3
