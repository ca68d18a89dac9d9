"""Real torchrun launches: two CPU ranks (gloo) of ``samples/ddp_training.py`` under memwatch.

``python -m torch.distributed.run --nproc-per-node 2 -m memwatch run --out DIR SAMPLE`` is
exactly what a user types (``torchrun`` is the same entry point). Kept small: two ranks,
a few steps, a three-layer MLP; each launch takes a few seconds, mostly importing torch.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from memwatch.cli import main
from memwatch.errors import RunFileError
from memwatch.store import RunReader

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "ddp_training.py"
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(out: Path, *sample_args: str, cwd: Path) -> subprocess.Popen[str]:
    """torchrun with two ranks, each running the sample under ``memwatch run --out OUT``."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", str(free_port()), "-m", "memwatch", "run", "--out", str(out),
        str(SAMPLE), *sample_args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen[str], timeout: float) -> str:
    """Wait for the launch; kill its whole process group if it overstays."""
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout}s:\n{output}")
    return output


def report_json(run_dir: Path) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(run_dir), "--format", "json"]) == 0
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def committed_steps(path: Path) -> int:
    try:
        with RunReader(path) as reader:
            return reader.step_count()
    except RunFileError:
        return 0  # not created yet


def test_two_ranks_one_leaking_are_merged_with_the_leak_on_its_rank(tmp_path: Path) -> None:
    # GIVEN two DDP ranks on CPU where rank 1 keeps every step's graph alive
    run_dir = tmp_path / "runs" / "ddp"
    # WHEN torchrun launches them under memwatch
    output = finish(launch(run_dir, "--leak-rank", "1", "--steps", "12", cwd=tmp_path), 120)
    # THEN each rank wrote its own file into the run directory
    assert sorted(p.name for p in run_dir.glob("*.db")) == [
        "ddp_training-rank0.db",
        "ddp_training-rank1.db",
    ], output
    # AND only rank 0 printed a report: the merged one, naming rank 1
    assert output.count("memwatch: ddp_training.py") == 1, output
    assert "memwatch: ddp_training.py (2 ranks)" in output
    assert "[rank-imbalance] rank 1: saved tensors" in output
    # AND the merged JSON report shows both ranks, the growth on rank 1 only
    report = report_json(run_dir)
    assert report["run"]["world_size"] == 2 and report["run"]["exit_status"] == 0
    ranks = {r["rank"]: r for r in report["ranks"]}
    assert sorted(ranks) == [0, 1]
    assert [ranks[r]["local_rank"] for r in (0, 1)] == [0, 1]
    assert ranks[0]["steps"] >= 12 and ranks[1]["steps"] >= 12
    assert ranks[0]["saved_growth_per_step_bytes"] == 0
    assert ranks[1]["saved_growth_per_step_bytes"] > MiB // 2
    assert ranks[1]["peak_autograd_saved_bytes"] > 3 * ranks[0]["peak_autograd_saved_bytes"]
    # AND the imbalance finding names rank 1; every finding carries its rank
    assert all("rank" in f for f in report["findings"])
    imbalance = [f for f in report["findings"] if f["kind"] == "rank-imbalance"]
    assert [f["rank"] for f in imbalance] == [1]
    assert imbalance[0]["evidence"]["metrics"]["saved_growth_per_step_bytes"]["per_rank"]["0"] == 0


def test_a_killed_rank_leaves_every_file_readable(tmp_path: Path) -> None:
    # GIVEN two ranks training for far longer than the test waits
    run_dir = tmp_path / "ddp"
    proc = launch(run_dir, "--steps", "100000", "--batch", "64", cwd=tmp_path)
    victim = run_dir / "ddp_training-rank1.db"
    try:
        # WHEN rank 1 has committed a few steps and is killed with SIGKILL
        deadline = time.monotonic() + 60
        while committed_steps(victim) < 4:
            assert proc.poll() is None, finish(proc, 5)
            assert time.monotonic() < deadline, "rank 1 committed no steps in 60 s"
            time.sleep(0.2)
        with RunReader(victim) as reader:
            pid = reader.info().pid
            seen_before_kill = reader.step_count()
        os.kill(pid, signal.SIGKILL)
        output = finish(proc, 90)  # torchrun then stops rank 0 and fails
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    # THEN rank 1's file still reads: every step it had committed, and no recorded end
    with RunReader(victim) as reader:
        assert reader.info().ended_at is None
        assert reader.step_count() >= seen_before_kill >= 4
        assert [s.step for s in reader.steps()] == list(range(reader.step_count()))
    # AND rank 0's file reads too, and the directory merges with rank 1 shown as killed
    report = report_json(run_dir)
    ranks = {r["rank"]: r for r in report["ranks"]}
    assert sorted(ranks) == [0, 1], output
    assert ranks[1]["status"] == "killed"
    assert ranks[0]["steps"] >= 4
    assert report["run"]["exit_status"] is None or report["run"]["exit_status"] != 0
