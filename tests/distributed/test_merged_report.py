"""``memwatch report RUN_DIR`` / ``check RUN_DIR`` and rank 0's end-of-run report.

Run directories are written by hand here (no torch, no processes); the torchrun tests
produce real ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import time
from pathlib import Path

import pytest

from memwatch.analysis import AnalysisInput
from memwatch.cli import main
from memwatch.commands.ranks import end_of_run_report, load_rank_directory
from memwatch.records import Finding
from tests.distributed.records import MiB, rank_info, steps, write_run


def kept_too_much(data: AnalysisInput) -> list[Finding]:
    """A stand-in per-run detector: flags a run that ends with over 5 MiB of saved tensors."""
    last = data.steps[-1] if data.steps else None
    if last is None or last.saved_bytes <= 5 * MiB:
        return []
    return [Finding("memory-growth", "error", "saved tensors pile up", "", 0, "free them")]


@pytest.fixture(autouse=True)
def one_per_run_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-run findings come from this stand-in, not from whatever detectors exist today."""
    monkeypatch.setattr("memwatch.analysis.registry.DETECTORS", [kept_too_much])


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Two finished ranks of 12 steps; rank 1 keeps 1 MiB more saved memory every step."""
    directory = tmp_path / "ddp"
    write_run(directory / "ddp_training-rank0.db", rank_info(0), steps(12))
    write_run(directory / "ddp_training-rank1.db", rank_info(1), steps(12, saved=lambda i: i * MiB))
    return directory


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = main(list(args))
    return status, out.getvalue()


def test_json_report_of_a_run_directory_shows_every_rank_and_labels_findings(
    run_dir: Path,
) -> None:
    # GIVEN a run directory of two ranks, rank 1 leaking
    # WHEN the JSON report is printed
    status, out = cli("report", str(run_dir), "--format", "json")
    report = json.loads(out)
    # THEN it is one memwatch.report/1 object describing the launch
    assert status == 0
    assert report["schema"] == "memwatch.report/1"
    assert report["run"]["rank"] is None and report["run"]["world_size"] == 2
    assert report["run"]["exit_status"] == 0
    # AND "ranks" holds both ranks side by side, the leak visible on rank 1 only
    ranks = {r["rank"]: r for r in report["ranks"]}
    assert sorted(ranks) == [0, 1]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 12
    assert ranks[0]["growth_per_step_bytes"] == 0
    assert ranks[1]["growth_per_step_bytes"] == MiB
    assert ranks[1]["growth_metric"] == "autograd_saved"
    assert ranks[1]["peak_autograd_saved_bytes"] == 14 * MiB
    assert ranks[1]["status"] == "exit 0" and ranks[1]["findings"] == 1
    # AND every finding carries its rank, with the cross-rank imbalance among them
    assert all("rank" in f for f in report["findings"])
    assert {(f["kind"], f["rank"]) for f in report["findings"]} == {
        ("memory-growth", 1),
        ("rank-imbalance", 1),
    }
    # AND "steps" holds the worst rank's numbers
    assert report["steps"]["peak_autograd_saved_bytes"] == 14 * MiB


def test_text_report_puts_the_ranks_in_one_table(run_dir: Path) -> None:
    # GIVEN the same run directory
    # WHEN the text report is printed
    status, out = cli("report", str(run_dir))
    # THEN the headline counts ranks, findings name their rank, and a table lists each rank
    assert status == 0
    assert out.startswith("memwatch: ddp_training.py (2 ranks): 1 error, 1 warning in 12 steps")
    assert "[rank-imbalance] rank 1: saved tensors +1.0 MiB/step vs +0 B/step" in out
    table = out.split("\nRanks (2 of 2): cpu, torch 2.13.0\n")[1].splitlines()
    assert table[0].split()[0] == "rank"
    rows = [line.split() for line in table[1:3]]
    assert [(r[0], r[1], r[-2:]) for r in rows] == [
        ("0", "12", ["exit", "0"]),
        ("1", "12", ["exit", "0"]),
    ]
    # AND it reads in 80 columns
    assert max(len(line) for line in out.splitlines()) <= 80


def test_check_of_a_run_directory_counts_every_ranks_findings(run_dir: Path) -> None:
    # GIVEN the run directory (rank 1: an error of its own and the imbalance warning)
    # WHEN checked at both levels
    at_error, out_error = cli("check", str(run_dir))
    at_warning, out_warning = cli("check", str(run_dir), "--fail-on", "warning")
    # THEN both fail, with one and two findings, each labelled with rank 1
    assert (at_error, at_warning) == (1, 1)
    assert "1 finding(s) at or above error" in out_error
    assert "2 finding(s) at or above warning" in out_warning
    assert out_warning.count("· rank 1") == 2


def test_balanced_ranks_pass_the_check(tmp_path: Path) -> None:
    # GIVEN two ranks with the same flat memory
    for r in (0, 1):
        write_run(tmp_path / f"t-rank{r}.db", rank_info(r), steps(12))
    # WHEN checked at warning level
    status, out = cli("check", str(tmp_path), "--fail-on", "warning")
    # THEN nothing is found
    assert status == 0, out


def test_a_killed_rank_is_shown_as_such_with_its_committed_steps(tmp_path: Path) -> None:
    # GIVEN rank 1's file has 5 committed steps and no end: its process is gone (the pid
    # now belongs to a process started long after the run did)
    here = socket.gethostname()
    write_run(tmp_path / "t-rank0.db", rank_info(0), steps(12))
    write_run(
        tmp_path / "t-rank1.db",
        rank_info(1, host=here, pid=os.getpid(), started_at=1000.0),
        steps(5),
        ended=False,
    )
    # WHEN the directory is loaded
    merged = load_rank_directory(tmp_path)
    # THEN rank 1 is "killed" with its 5 steps, and the launch has no exit status
    assert [(e.rank, e.summary.count, e.status) for e in merged.entries] == [
        (0, 12, "exit 0"),
        (1, 5, "killed"),
    ]
    info = merged.info()
    assert info is not None and info.exit_status is None and info.ended_at is None


def test_files_of_an_earlier_run_in_the_same_directory_are_left_out(tmp_path: Path) -> None:
    # GIVEN --out reused: an old 3-rank run's files, then a new 2-rank run over them
    for r in range(3):
        write_run(tmp_path / f"old-rank{r}.db", rank_info(r, 3, started_at=10.0), steps(4))
    for r in range(2):
        write_run(tmp_path / f"t-rank{r}.db", rank_info(r, 2, started_at=5000.0), steps(6))
    # WHEN the directory is loaded
    merged = load_rank_directory(tmp_path)
    # THEN each rank's newest file is used and the replaced ones are named in the notes
    counts = [(e.rank, e.summary.count) for e in merged.entries]
    assert counts[:2] == [(0, 6), (1, 6)]
    assert any("old-rank0.db: an earlier run of rank 0" in n for n in merged.notes)


# -- the end of a torchrun launch ---------------------------------------------------------------
def test_rank_0_prints_the_merged_report_when_every_rank_has_finished(run_dir: Path) -> None:
    # GIVEN both ranks' files are finished
    own = run_dir / "ddp_training-rank0.db"
    # WHEN rank 0 ends
    text = end_of_run_report(own, rank_info(0, ended_at=2000.0, exit_status=0), wait_s=0)
    # THEN it prints the merged report, pointing at the run directory
    assert text is not None
    assert text.startswith("memwatch: ddp_training.py (2 ranks)")
    assert f"run directory    {run_dir}" in text


def test_rank_0_prints_its_own_report_and_where_the_others_are_when_they_are_not_done(
    tmp_path: Path,
) -> None:
    # GIVEN rank 0 finished, rank 1 still running on this host, rank 2 not in the directory
    own = write_run(tmp_path / "t-rank0.db", rank_info(0, 3), steps(12))
    running = rank_info(1, 3, host=socket.gethostname(), pid=os.getpid(), started_at=time.time())
    write_run(tmp_path / "t-rank1.db", running, steps(3), ended=False)
    # WHEN rank 0 ends, willing to wait a little
    started = time.monotonic()
    text = end_of_run_report(own, rank_info(0, 3, exit_status=0), wait_s=0.5, poll_s=0.1)
    # THEN it waited no longer than allowed, then printed its own report and the others' state
    assert 0.5 <= time.monotonic() - started < 5
    assert text is not None
    assert text.startswith("memwatch: ddp_training.py: ")  # a single-run report
    assert "no file for rank 2 here (another host?)" in text
    assert "rank 1 running" in text
    assert f"memwatch report {tmp_path}" in text


def test_other_ranks_stay_quiet_unless_their_script_failed(run_dir: Path) -> None:
    # GIVEN rank 1's run ended
    own = run_dir / "ddp_training-rank1.db"
    # WHEN it ended well, and WHEN it ended with an error
    quiet = end_of_run_report(own, rank_info(1, exit_status=0), wait_s=0)
    failed = end_of_run_report(own, rank_info(1, exit_status=1), wait_s=0)
    # THEN it prints nothing in the first case, and its own report in the second
    assert quiet is None
    assert failed is not None and failed.startswith("memwatch: rank 1 failed; its own report:")


def test_rank_0_does_not_wait_for_ranks_that_cannot_finish(tmp_path: Path) -> None:
    # GIVEN rank 1 was killed (no end, process gone) and rank 2 has no file on this host
    own = write_run(tmp_path / "t-rank0.db", rank_info(0, 3), steps(12))
    dead = rank_info(1, 3, host=socket.gethostname(), pid=os.getpid(), started_at=1000.0)
    write_run(tmp_path / "t-rank1.db", dead, steps(3), ended=False)
    # WHEN rank 0 ends, willing to wait a long time
    started = time.monotonic()
    text = end_of_run_report(own, rank_info(0, 3, exit_status=0), wait_s=30)
    # THEN it reports at once, naming both
    assert time.monotonic() - started < 5
    assert text is not None and "rank 1 killed" in text and "no file for rank 2" in text
