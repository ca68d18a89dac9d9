"""FrameworkWatch, the framework-neutral core of the callbacks (no framework needed)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from memwatch.integrations.framework import FrameworkWatch
from memwatch.store import RunReader
from memwatch.store.paths import is_rank_directory
from tests.integrations.helpers import logged, phases


def _steps(run: FrameworkWatch, n: int, accumulate: int = 1) -> None:
    model = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    global_step = 0
    run.phase("train", "start", 0)
    for batch in range(n * accumulate):
        model(torch.randn(4, 8)).pow(2).mean().backward()
        if (batch + 1) % accumulate == 0:
            opt.step()
            opt.zero_grad()
            global_step += 1
        run.step_to(global_step)  # the framework's hook after every batch


def test_rank_writes_its_own_file_in_the_run_directory_and_logs_instead_of_printing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN rank 1 of 2 as the framework reports it (no RANK in the environment)
    run = FrameworkWatch("test", logging.getLogger("memwatch.test.rank"), out=tmp_path / "ddp")
    with logged("memwatch.test.rank") as lines:
        run.start(global_step=0, rank=1, world_size=2)
        _steps(run, 3, accumulate=2)
        run.stop()
    # THEN its run file is ddp/<stem>-rank1.db with rank 1 of 2 recorded
    files = list((tmp_path / "ddp").glob("*.db"))
    assert [f.name.endswith("-rank1.db") for f in files] == [True]
    assert is_rank_directory(tmp_path / "ddp")
    with RunReader(files[0]) as reader:
        info = reader.info()
        steps = reader.steps()
    assert (info.rank, info.world_size) == (1, 2)
    # AND one step per global step (micro-batches merged), phases recorded
    assert [s.backward_calls for s in steps] == [2, 2, 2]
    assert phases(files[0]) == [("train", "start"), ("train", "end")]
    # AND only rank 0 prints the report; this rank logs one summary line
    assert capsys.readouterr().err == ""
    assert any("run file" in line for line in lines)


def test_an_active_watch_keeps_the_recording(tmp_path: Path) -> None:
    # GIVEN `with memwatch()` (or memwatch run) already watching the process
    from memwatch import memwatch

    with memwatch(tmp_path / "outer.db"), logged("memwatch.test.nested") as lines:
        run = FrameworkWatch("test", logging.getLogger("memwatch.test.nested"))
        run.start(0, None, None)
        # THEN the callback leaves it alone and says so once
        assert run.watch is None
    assert any("already running" in line for line in lines)


def test_memwatch_never_imports_the_frameworks() -> None:
    # GIVEN a fresh interpreter WHEN memwatch, its integrations core and the accelerate
    #   helper are imported THEN no framework is imported
    code = (
        "import sys, memwatch, memwatch.integrations.framework, memwatch.integrations.accelerate;"
        "print([m for m in ('lightning', 'pytorch_lightning', 'transformers', 'accelerate')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
