"""memwatch never harms the user's files or program, and every failure is one clear line.

Each test is a case a new user hit: a run file path that named their CSV or their script,
runs started together, an unwritable --out, a full disk, a script that does not compile,
a missing module, Ctrl-C before the start, no terminal, unknown options, bad sizes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from memwatch.cli import main
from memwatch.errors import RunFileError
from memwatch.store import RunReader, RunWriter
from memwatch.store.paths import run_file_plan
from tests.test_store import make_info, make_step

TRAIN = textwrap.dedent(
    """
    import pathlib, sys, torch
    pathlib.Path("ran.txt").write_text("the script ran")
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        opt.zero_grad()
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
    """
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding ``train.py``; the CLI runs in this process."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(TRAIN)
    return tmp_path


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv[:], sys.path[:]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exc:
            status = int(exc.code or 0)
        finally:
            sys.argv[:], sys.path[:] = saved
    return status, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- data loss ---------------------------------------------------------------------------------
@pytest.mark.parametrize("victim", ["results.csv", "train.py", "notes"])
def test_a_named_out_never_replaces_a_file_that_is_not_a_run(workdir: Path, victim: str) -> None:
    # GIVEN a file of the user's at the path given as --out (even the script itself)
    path = workdir / victim
    if not path.exists():
        path.write_text("precious,data\n1,2\n")
    before = path.read_bytes()
    # WHEN memwatch is asked to record there, even with --force
    for extra in ((), ("--force",)):
        status, _, err = cli("run", "--out", victim, *extra, "train.py")
        # THEN it refuses in one line before the script runs, and the file is untouched
        assert status == 2
        assert "is not a memwatch run file; memwatch never replaces it" in one_line(err)
        assert path.read_bytes() == before
        assert not (workdir / "ran.txt").exists()


def test_an_earlier_run_file_is_replaced_only_with_force(workdir: Path) -> None:
    # GIVEN a run recorded to r.db
    assert cli("run", "--no-report", "--out", "r.db", "train.py", "2")[0] == 0
    with RunReader(workdir / "r.db") as reader:
        first = reader.info().id
    # WHEN the same --out is given again
    status, _, err = cli("run", "--no-report", "--out", "r.db", "train.py", "2")
    # THEN memwatch refuses and says how to replace it
    assert status == 2 and "pass --force" in one_line(err)
    # AND with --force it records a new run there
    assert cli("run", "--no-report", "--force", "--out", "r.db", "train.py", "3")[0] == 0
    with RunReader(workdir / "r.db") as reader:
        assert reader.info().id != first and reader.step_count() == 3


def test_a_stale_sqlite_journal_beside_a_named_out_is_not_touched(workdir: Path) -> None:
    # GIVEN a WAL file of some other database at <out>-wal (SQLite would replay it)
    (workdir / "r.db-wal").write_bytes(b"someone else's journal")
    # WHEN memwatch is asked to record to r.db
    status, _, err = cli("run", "--out", "r.db", "train.py")
    # THEN it refuses, and leaves the journal and the path as they were
    assert status == 2 and "companion files" in one_line(err)
    assert (workdir / "r.db-wal").read_bytes() == b"someone else's journal"
    assert not (workdir / "r.db").exists()


def test_runs_started_in_the_same_second_each_get_their_own_file(tmp_path: Path) -> None:
    # GIVEN eight runs of one script starting at the same moment with default names
    barrier = threading.Barrier(8)
    created: list[Path] = []
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            path, alternatives = run_file_plan(None, str(tmp_path / "train.py"))
            path, alternatives = tmp_path / path, (tmp_path / p for p in alternatives or ())
            barrier.wait()
            writer = RunWriter(path, make_info(id=f"run-{i}"), alternatives=alternatives)
            writer.add_step(make_step(i))
            writer.close()
            created.append(writer.path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # THEN each run has its own file, holding its own run
    assert not errors
    assert len(set(created)) == 8
    ids = set()
    for path in created:
        with RunReader(path) as reader:
            ids.add(reader.info().id)
    assert ids == {f"run-{i}" for i in range(8)}


def test_two_writers_given_the_same_path_never_share_it(tmp_path: Path) -> None:
    # GIVEN a run recording to r.db (this process is its writer)
    import socket

    live = make_info(id="first", pid=os.getpid(), host=socket.gethostname(), started_at=time.time())
    first = RunWriter(tmp_path / "r.db", live)
    # WHEN a second process is given the same --out, even with force
    # THEN it is refused while the first keeps its file
    for force in (False, True):
        with pytest.raises(RunFileError, match="being written by a live run"):
            RunWriter(tmp_path / "r.db", make_info(id="second"), force=force)
    first.add_step(make_step(0))
    first.close()
    with RunReader(tmp_path / "r.db") as reader:
        assert reader.info().id == "first" and reader.step_count() == 1


@pytest.mark.parametrize(
    "out", ["train.py/run.db", "/proc/memwatch-no-such/run.db", "/proc/version"]
)
def test_an_unwritable_out_fails_before_the_script_runs(workdir: Path, out: str) -> None:
    # GIVEN an --out that cannot be created (below a file, in /proc, a /proc file)
    # WHEN memwatch run is given it
    status, _, err = cli("run", "--out", out, "train.py")
    # THEN one line says so, exit 2, and the script never ran (nothing ran unwatched)
    line = one_line(err)
    assert status == 2 and line.startswith("memwatch: ")
    assert not (workdir / "ran.txt").exists()
    assert "no memory problems found" not in err


def test_a_full_disk_mid_run_is_reported_with_the_step_and_the_cause(workdir: Path) -> None:
    # GIVEN a run whose disk fills up after a few commits (SQLite's own page limit:
    # a real SQLITE_FULL, "database or disk is full")
    from memwatch.session import memwatch
    from tests.test_session import train

    with memwatch(out="r.db") as mw:
        assert mw._writer is not None
        pages = mw._writer._conn.execute("PRAGMA page_count").fetchone()[0]
        # room for a few commits (one commit batches up to 256 steps, ~40 steps a page)
        mw._writer._conn.execute(f"PRAGMA max_page_count = {pages + 12}")
        # WHEN training goes on past the point where the file is full
        train(steps=1500)
    # THEN training finished, and the watch knows where recording stopped and why
    assert mw.step_count == 1500
    assert mw.recording_stopped is not None
    last, reason = mw.recording_stopped
    assert 0 <= last < 1499 and reason == "database or disk is full"
    # AND the run file's end record says the same, and holds every step up to there
    with RunReader(workdir / "r.db") as reader:
        info = reader.info()
        assert info.recording_stopped_at_step == last
        assert info.recording_stopped_reason == "database or disk is full"
        assert reader.last_step() == last
    # AND the report says it too
    status, out, _ = cli("report", "r.db")
    assert status == 0
    assert f"recording stopped after step {last}: database or disk is full" in out


# -- never change the watched program --------------------------------------------------------------
def python_itself(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_a_syntax_error_looks_exactly_as_python_shows_it(workdir: Path) -> None:
    # GIVEN a script that does not compile
    (workdir / "bad.py").write_text("x = 1\ndef broken(:\n    pass\n")
    expected = python_itself("bad.py", cwd=workdir)
    # WHEN it is run under memwatch
    status, out, err = cli("run", "bad.py")
    # THEN the output and status are python's, with no report and no run file
    assert (status, out, err) == (expected.returncode, expected.stdout, expected.stderr)
    assert not (workdir / "memwatch-runs").exists()


@pytest.mark.parametrize("module", ["missing.module", "json.nothere"])
def test_a_missing_module_looks_exactly_as_python_shows_it(workdir: Path, module: str) -> None:
    expected = python_itself("-m", module, cwd=workdir)
    status, out, err = cli("run", "-m", module)
    assert (status, out, err) == (expected.returncode, expected.stdout, expected.stderr)
    assert not (workdir / "memwatch-runs").exists()


def test_ctrl_c_before_the_run_starts_leaves_no_run_and_no_report(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Ctrl-C arriving while the watch sets up its probes, after its file was created
    import memwatch.collect.probes as probes

    def interrupted(watch: object) -> list[object]:
        raise KeyboardInterrupt

    monkeypatch.setattr(probes, "default_probes", interrupted)
    # WHEN memwatch run is interrupted there
    status, _, err = cli("run", "train.py")
    # THEN it stops as python would, the script never ran, no report, no run file
    assert status == 130 and err == "KeyboardInterrupt\n"
    assert not (workdir / "ran.txt").exists()
    assert not list(workdir.glob("memwatch-runs/*"))


def test_ctrl_c_traceback_shows_the_users_frames_not_memwatchs(workdir: Path) -> None:
    # GIVEN Ctrl-C landing during backward(), which memwatch wraps
    (workdir / "interrupted.py").write_text(
        textwrap.dedent(
            """
            import torch
            model = torch.nn.Linear(4, 2)
            def interrupt(grad):
                raise KeyboardInterrupt
            x = torch.randn(8, 4, requires_grad=True)
            x.register_hook(interrupt)
            model(x).sum().backward()
            """
        )
    )
    # WHEN it runs under memwatch
    status, _, err = cli("run", "--no-report", "interrupted.py")
    # THEN the traceback names the user's lines and none of memwatch's or runpy's
    assert status == 130
    assert "KeyboardInterrupt" in err and 'interrupted.py", line 8, in <module>' in err
    assert "memwatch" not in err.replace(str(workdir), "") and "runpy" not in err


# -- clear errors ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--bogus", "train.py"], "memwatch: unknown option '--bogus' for memwatch run"),
        (["run", "--budget", "0", "train.py"], "a budget must be more than 0 bytes"),
        (["run", "--budget", "-1GB", "train.py"], "a size cannot be negative"),
        (["run", "--budget=-5", "train.py"], "a size cannot be negative"),
    ],
)
def test_bad_run_options_get_one_clear_line(workdir: Path, args: list[str], message: str) -> None:
    status, _, err = cli(*args)
    assert status == 2 and one_line(err).startswith("memwatch: ") and message in err
    assert not (workdir / "ran.txt").exists()


def test_a_module_run_is_filed_under_the_module_not_its_package(workdir: Path) -> None:
    # GIVEN a module inside a package
    package = workdir / "mwpkg_trust" / "sub"
    package.mkdir(parents=True)
    (workdir / "mwpkg_trust" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "train_mod.py").write_text(TRAIN)
    # WHEN it runs with -m and no --out
    status, _, err = cli("run", "--no-report", "-m", "mwpkg_trust.sub.train_mod", "2")
    # THEN its run file is named after the module
    assert status == 0, err
    names = [p.name for p in (workdir / "memwatch-runs").iterdir()]
    assert len(names) == 1 and names[0].startswith("mwpkg_trust.sub.train_mod-"), names


def test_report_and_check_say_when_a_run_was_killed_and_where_it_stopped(tmp_path: Path) -> None:
    # GIVEN a run file left by a writer that is gone (no end record), and one still live
    import socket

    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    killed = RunWriter(
        tmp_path / "killed.db",
        make_info(pid=dead_pid.pid, host=socket.gethostname(), started_at=1.0),
    )
    live = RunWriter(
        tmp_path / "live.db",
        make_info(pid=os.getpid(), host=socket.gethostname(), started_at=time.time()),
    )
    for writer in (killed, live):
        for i in range(5):
            writer.add_step(make_step(i))
        writer.commit()
    killed.close()
    # WHEN they are reported and checked
    # THEN each says how the run stands and at which step its record ends
    for command in ("report", "check"):
        status, out, _ = cli(command, str(tmp_path / "killed.db"))
        assert status == 0 and "killed or crashed: the run file has no end record" in out
        assert "last recorded step 4" in out
        status, out, _ = cli(command, str(tmp_path / "live.db"))
        assert status == 0 and "still running" in out and "last recorded step 4" in out
    # AND the JSON report says it as one word and in words (an ended run: "ended", no state)
    for name, word in (("killed.db", "killed"), ("live.db", "running")):
        status, out, _ = cli("report", str(tmp_path / name), "--format", "json")
        run = json.loads(out)["run"]
        assert status == 0 and run["status"] == word and "last recorded step 4" in run["state"]
    live.close()
    ended = RunWriter(tmp_path / "ended.db", make_info(started_at=1.0))
    ended.add_step(make_step(0))
    ended.close(make_info(started_at=1.0, ended_at=2.0, exit_status=0))
    run = json.loads(cli("report", str(tmp_path / "ended.db"), "--format", "json")[1])["run"]
    assert run["status"] == "ended" and run["state"] is None


def test_the_cpu_budget_oom_says_it_is_memwatchs_simulated_budget() -> None:
    from memwatch.collect.budget import budget_oom_message

    message = budget_oom_message(2 * 1024**2, 10 * 1024**2, 16 * 1024**2)
    # the allocator's wording stays (retry code matches on it) ...
    assert message.startswith("CUDA out of memory (memwatch budget). Tried to allocate 2.00 MiB.")
    # ... and it says whose limit it is
    assert "memwatch's simulated budget" in message


# -- no terminal -------------------------------------------------------------------------------
def test_the_dashboard_without_a_terminal_fails_at_once_with_one_line(tmp_path: Path) -> None:
    # GIVEN a run file, and memwatch tui started from a script (no terminal)
    writer = RunWriter(tmp_path / "r.db", make_info())
    writer.add_step(make_step(0))
    writer.close()
    # WHEN it runs with stdin from /dev/null and stdout to a file
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "memwatch", "tui", "r.db"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,  # before the fix it hung here, writing escape codes forever
        )
    # THEN it ends with one line and exit 2, and wrote no escape codes to the file
    assert proc.returncode == 2
    assert "needs a terminal" in one_line(proc.stderr)
    assert (tmp_path / "out.txt").read_text() == ""


def test_run_live_without_a_terminal_runs_plainly_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    proc = subprocess.run(
        [sys.executable, "-m", "memwatch", "run", "--live", "--out", "r.db", "train.py"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--live needs a terminal" in proc.stderr and "running without the dashboard" in (
        proc.stderr
    )
    assert "no memory problems found in 3 steps" in proc.stderr
    assert (tmp_path / "r.db").exists()


def test_a_sqlite_error_message_on_rollback_no_longer_hides_the_cause(tmp_path: Path) -> None:
    # GIVEN a writer whose file fills up (SQLite rolls the transaction back by itself)
    writer = RunWriter(tmp_path / "r.db", make_info())
    pages = writer._conn.execute("PRAGMA page_count").fetchone()[0]
    writer._conn.execute(f"PRAGMA max_page_count = {pages}")
    for i in range(2000):
        writer.add_step(make_step(i))
    # WHEN it commits
    # THEN the error is the real cause, not "cannot rollback - no transaction is active"
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        writer.commit()


def test_run_live_never_truncates_an_existing_log_file(tmp_path: Path) -> None:
    # GIVEN a file of the user's where --live would put the script's output
    from memwatch.commands.live import live_session

    (tmp_path / "results.log").write_text("the user's own log\n")
    out = io.StringIO()
    command = [sys.executable, "-c", "import sys; print('script output'); sys.exit(3)"]
    # WHEN a live run records beside it
    status = live_session(command, tmp_path / "results.db", tmp_path / "results.log", out=out)
    # THEN the user's file is untouched and the output went to a fresh name
    assert status == 3
    assert (tmp_path / "results.log").read_text() == "the user's own log\n"
    assert (tmp_path / "results-2.log").read_text() == "script output\n"
    assert "results-2.log" in out.getvalue()
