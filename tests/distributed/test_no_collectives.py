"""memwatch adds no collective to training: no barrier, no all-reduce, not even at the end.

A collective inside memwatch would make every rank wait for the slowest one's bookkeeping,
and would hang the whole job when one rank dies. Every ``torch.distributed`` collective is
wrapped here to record the code that called it; a DDP script that makes its own
collectives then runs under ``memwatch run`` as rank 0 of a world of one, end-of-run
report included.
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import textwrap
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import torch
import torch.distributed as dist

from memwatch.cli import main

COLLECTIVES = (
    "all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "all_to_all",
    "all_to_all_single", "barrier", "monitored_barrier", "broadcast", "broadcast_object_list",
    "gather", "gather_object", "reduce", "reduce_scatter", "reduce_scatter_tensor", "scatter",
    "scatter_object_list", "send", "recv", "isend", "irecv", "batch_isend_irecv",
    "_broadcast_coalesced", "_verify_params_across_processes",
)  # fmt: skip

TORCH_DIR = str(Path(torch.__file__).parent)
MEMWATCH_DIR = str(Path(__file__).resolve().parents[2] / "memwatch")

SCRIPT = textwrap.dedent(
    """
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo")
    model = DistributedDataParallel(nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(5):
        loss = model(torch.randn(4, 8)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen = loss.detach().clone()
        dist.all_reduce(seen)  # the script's own collective, once per step
    dist.barrier()
    dist.destroy_process_group()
    """
)


def caller_outside_torch(frame: FrameType | None) -> str:
    """The file of the innermost caller that is not torch itself: who asked for it."""
    while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else "?"


@pytest.fixture
def collective_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(collective, calling file) for every torch.distributed collective called."""
    calls: list[tuple[str, str]] = []
    for name in COLLECTIVES:
        original = getattr(dist, name, None)
        if original is None:
            continue

        def wrapper(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            calls.append((_name, caller_outside_torch(sys._getframe(1))))
            return _original(*args, **kw)

        monkeypatch.setattr(dist, name, wrapper)
    return calls


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_memwatch_makes_no_collective_call_while_ddp_trains_or_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collective_calls: list[tuple[str, str]]
) -> None:
    # GIVEN rank 0 of a one-rank torchrun world, and a DDP script with its own collectives
    for key, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(key, value)  # fmt: skip
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    # WHEN memwatch runs it, records every step and prints rank 0's end-of-run report
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        status = main(["run", "--out", str(out), str(script)])
    # THEN the run worked and was reported as a run directory of one rank
    assert status == 0, stderr.getvalue()
    assert (out / "ddp_script-rank0.db").is_file()
    assert "memwatch: ddp_script.py (1 rank)" in stderr.getvalue()
    # AND the wrapping saw the script's own collectives (so it would have seen memwatch's)
    from_script = [name for name, file in collective_calls if file == str(script)]
    assert from_script.count("all_reduce") == 5 and "barrier" in from_script
    # AND no collective was asked for by memwatch's code
    assert [c for c in collective_calls if c[1].startswith(MEMWATCH_DIR)] == []
    assert {file for _, file in collective_calls} == {str(script)}
