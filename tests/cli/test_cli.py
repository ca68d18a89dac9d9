"""The command line as a user meets it: `memwatch run`, `report`, `check`, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memwatch.cli import main
from tests.helpers import SAMPLES

TRAIN = textwrap.dedent(
    """
    import sys, json, torch
    from torch import nn
    torch.set_num_threads(1)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        opt.zero_grad()
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
    print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__}))
    if "--fail" in sys.argv:
        raise ValueError("boom from the script")
    if "--exit" in sys.argv:
        sys.exit(7)
    """
)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "memwatch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_run_executes_the_script_as_python_would_and_reports(script: Path, tmp_path: Path) -> None:
    # GIVEN a training script taking arguments
    # WHEN run through `memwatch run` with arguments that memwatch also knows (--out)
    proc = run_cli("run", str(script), "4", "--out", "x", cwd=tmp_path)
    # THEN the script saw exactly python's argv, sys.path[0] and __name__, and exit 0
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {
        "argv": [str(script), "4", "--out", "x"],
        "path0": str(tmp_path),
        "name": "__main__",
    }
    # AND a short report ends the output, naming the run file it wrote
    assert "memwatch: train.py: no memory problems found in 4 steps" in proc.stderr
    runs = list((tmp_path / "memwatch-runs").glob("train-*.db"))
    assert len(runs) == 1 and str(runs[0].relative_to(tmp_path)) in proc.stderr


def test_script_errors_show_the_users_traceback_and_exit_1(script: Path, tmp_path: Path) -> None:
    proc = run_cli("run", "--no-report", str(script), "2", "--fail", cwd=tmp_path)
    assert proc.returncode == 1
    assert "ValueError: boom from the script" in proc.stderr
    assert f'File "{script}"' in proc.stderr
    assert "memwatch/commands" not in proc.stderr and "runpy" not in proc.stderr


def test_script_exit_status_is_passed_through(script: Path, tmp_path: Path) -> None:
    proc = run_cli("run", "--no-report", str(script), "1", "--exit", cwd=tmp_path)
    assert proc.returncode == 7


def test_run_module_with_dash_m(tmp_path: Path) -> None:
    # GIVEN a package module in the working directory
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "train.py").write_text(TRAIN)
    # WHEN run as `memwatch run -m pkg.train 2`
    proc = run_cli("run", "--out", "r.db", "-m", "pkg.train", "2", cwd=tmp_path)
    # THEN it ran as __main__ with the module's path as argv[0], cwd as sys.path[0]
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["argv"] == [str(pkg / "train.py"), "2"]
    assert seen["path0"] == str(tmp_path) and seen["name"] == "__main__"
    assert (tmp_path / "r.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.py"], "memwatch: can't open file 'missing.py': no such file"),
        (["run", "--budget", "lots", "x.py"], "memwatch: invalid size 'lots'"),
        (["report", "nowhere.db"], "memwatch: no run file at nowhere.db"),
        (["report"], "memwatch: no run given and no run files in ./memwatch-runs"),
        (["report", "junk.db"], "is not a memwatch run file"),
        (["tui", "junk.db"], "is not a memwatch run file"),
        (["report", "--format", "yaml"], "invalid choice: 'yaml'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_gets_one_clear_line_and_nonzero_exit(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a directory with a file that is not a run
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.db").write_text("not a database")
    # WHEN the CLI is called with bad input
    try:
        status = main(args)
    except SystemExit as exc:  # argparse usage errors
        status = int(exc.code or 0)
    err = capsys.readouterr().err
    # THEN one line explains it, no traceback, non-zero exit
    assert status != 0
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_report_formats_and_check_levels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a recorded clean sample run
    out = tmp_path / "clean.db"
    assert (
        main(
            [
                "run",
                "--no-report",
                "--out",
                str(out),
                str(SAMPLES / "clean_training.py"),
                "--steps",
                "6",
            ]
        )
        == 0
    )
    capsys.readouterr()
    # WHEN the JSON report is asked for
    assert main(["report", str(out), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # THEN it follows the memwatch.report/1 contract
    assert report["schema"] == "memwatch.report/1"
    # memwatch.report/1 keys, plus the additive "categories" (memory by category)
    assert set(report) == {"schema", "run", "steps", "findings", "categories"}
    assert report["run"]["device"]["type"] in ("cpu", "cuda")
    assert report["run"]["exit_status"] == 0
    assert report["steps"]["count"] >= 6
    assert report["steps"]["peak_autograd_saved_bytes"] > 0
    assert set(report["steps"]) == {
        "count",
        "peak_allocated_bytes",
        "final_allocated_bytes",
        "peak_autograd_saved_bytes",
        "peak_rss_bytes",
    }
    # AND markdown renders, and check passes a clean run at both levels
    assert main(["report", str(out), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("## memwatch: clean_training.py")
    assert main(["check", str(out), "--fail-on", "warning"]) == 0


def test_sigterm_records_the_end_then_dies_of_sigterm_even_past_a_bare_except(
    tmp_path: Path,
) -> None:
    # GIVEN a long training script whose loop swallows every exception with a bare except
    script = tmp_path / "forever.py"
    script.write_text(
        "import torch, time\n"
        "model = torch.nn.Linear(4, 4)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "for i in range(100000):\n"
        "    try:\n"
        "        opt.zero_grad(); model(torch.randn(2, 4)).sum().backward(); opt.step()\n"
        "        if i == 5: print('ready', flush=True)\n"
        "        time.sleep(0.01)\n"
        "    except:\n"
        "        pass\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "memwatch", "run", "--no-report", "--out", "r.db", str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        # WHEN it is sent SIGTERM (as torchrun, Slurm or Kubernetes do)
        child.send_signal(15)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:  # never leave a training running behind a failed test
            child.kill()
            child.wait()
    # THEN it dies of SIGTERM as plain python would (no SystemExit for the except to eat)
    assert child.returncode == -15
    # AND the run file records the end (shell status 143) and every step taken
    from memwatch.store import RunReader

    with RunReader(tmp_path / "r.db") as reader:
        info = reader.info()
        assert info.exit_status == 143 and info.ended_at is not None
        assert reader.step_count() >= 6


def test_check_fails_a_leaking_run_and_names_the_culprit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a recorded run of the leaking sample
    out = tmp_path / "leak.db"
    sample = str(SAMPLES / "bugs" / "graph_accumulation.py")
    assert main(["run", "--no-report", "--out", str(out), sample, "--steps", "12"]) == 0
    capsys.readouterr()
    # WHEN CI checks it
    status = main(["check", str(out), "--fail-on", "error"])
    printed = capsys.readouterr().out
    # THEN it exits 1 and says what, where and how to fix
    assert status == 1
    assert "ERROR [graph-accumulation]" in printed
    assert "graph_accumulation.py:41 in main" in printed
    assert "variable `running_loss`" in printed and "loss.item()" in printed


def test_track_tensors_records_tensor_bytes_on_cpu(tmp_path: Path) -> None:
    # GIVEN a CPU training script
    # WHEN run with --track-tensors
    out = tmp_path / "t.db"
    sample = str(SAMPLES / "clean_training.py")
    assert (
        main(["run", "--no-report", "--track-tensors", "--out", str(out), sample, "--steps", "5"])
        == 0
    )
    # THEN each step carries live tensor bytes (the model's weights and data at least)
    from memwatch.store import RunReader

    with RunReader(out) as reader:
        steps = reader.steps()
    training = [s for s in steps if s.boundary == "optimizer"]
    assert len(training) == 5
    assert all(s.allocated_bytes is not None for s in steps)
    assert all(s.peak_allocated_bytes >= s.allocated_bytes > 100_000 for s in training)
