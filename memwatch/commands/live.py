"""``memwatch run --live``: record the script in a child process, watch it in the dashboard.

The script runs as ``python -m memwatch run --no-report --out RUN ...`` in its own
session, with its output going to a log file (printing to the terminal would corrupt the
dashboard's screen); the dashboard follows the run file read-only, so watching costs
the training nothing. Quitting the dashboard while the training still runs asks
whether to leave it running or stop it: a run is never killed silently.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from memwatch.errors import RunFileError
from memwatch.store.claim import claim_fresh_file

#: How long a stopped training gets to record its end before a harder signal.
STOP_GRACE_S = (10.0, 5.0)


def run_live(child_argv: list[str], run_path: Path, log_path: Path) -> int:
    """Run ``memwatch run CHILD_ARGV`` in a child and open the dashboard on its run file.

    Returns the child's exit status if it ended (also when the user stopped it), else 0
    (the user left it running; where it records and its pid are printed).
    """
    command = [
        sys.executable,
        "-m",
        "memwatch",
        "run",
        "--no-report",
        "--out",
        str(run_path),
        *child_argv,
    ]
    return live_session(command, run_path, log_path)


def live_session(
    command: list[str],
    run_path: Path,
    log_path: Path,
    dashboard: Callable[[subprocess.Popen[bytes], Path, Path], str | None] | None = None,
    out: IO[str] | None = None,
    poll_s: float = 0.1,
) -> int:
    """Start ``command``, wait for its run file, show ``dashboard``, then act on the choice.

    ``dashboard(child, run_path, log_path)`` returns ``"leave"``, ``"stop"`` or None; it
    defaults to the Textual dashboard (tests pass a stand-in).
    """
    out = out if out is not None else sys.stderr
    show = dashboard if dashboard is not None else open_dashboard
    before = _identity(run_path)
    # never truncates a file already there: the user's results.log, an earlier run's log
    log_path = claim_fresh_file(log_path, "log file")
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl+C in the dashboard must not reach the training
        )
    print(f"memwatch: training started (pid {child.pid}); its output goes to {log_path}", file=out)
    try:
        ready = wait_for_run(child, run_path, before, poll_s)
    except KeyboardInterrupt:
        print("memwatch: interrupted before the run started; stopping the training", file=out)
        return stop_child(child, out)
    if not ready:
        status = _status(child.wait())
        print(
            f"memwatch: the training exited with status {status} before recording started; "
            f"last lines of {log_path}:",
            file=out,
        )
        print(_tail(log_path), file=out)
        return status
    choice = show(child, run_path, log_path)
    return finish(choice, child, run_path, log_path, out)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_ctime_ns


def wait_for_run(
    child: subprocess.Popen[bytes],
    run_path: Path,
    before: tuple[int, int] | None = None,
    poll_s: float = 0.1,
) -> bool:
    """Wait until ``run_path`` is a readable run written by ``child``; False if it exits first.

    A file already at ``run_path`` from an earlier run (``before``) is not taken for the new
    one: the writer replaces it, which changes its identity.
    """
    from memwatch.store import RunReader

    while True:
        exited = child.poll() is not None
        if run_path.exists() and _identity(run_path) != before:
            try:
                RunReader(run_path).close()
                return True
            except RunFileError:
                pass  # created but not yet initialised: try again
        if exited:
            return False
        time.sleep(poll_s)


def open_dashboard(child: subprocess.Popen[bytes], run_path: Path, log_path: Path) -> str | None:
    """The dashboard in follow mode, with the script's output a key away."""
    from memwatch_tui import prefer_fixed_colours

    prefer_fixed_colours()
    from memwatch_tui.app import MemwatchApp
    from memwatch_tui.feed import FileFeed

    try:
        source = FileFeed(run_path)
    except RunFileError:
        return None
    app = MemwatchApp(source, path=run_path, follow=True, log_path=log_path, child=child)
    return app.run()


def finish(
    choice: str | None,
    child: subprocess.Popen[bytes],
    run_path: Path,
    log_path: Path,
    out: IO[str],
) -> int:
    """Act on the user's choice; the exit status of ``memwatch run --live``."""
    status = child.poll()
    if status is not None:
        return _status(status)
    if choice == "stop":
        return stop_child(child, out)
    print(
        f"memwatch: the training keeps running in the background (pid {child.pid}).\n"
        f"  it records to {run_path}\n"
        f"  its output goes to {log_path}\n"
        f"  watch it again with: memwatch tui {run_path}",
        file=out,
    )
    return 0


def stop_child(child: subprocess.Popen[bytes], out: IO[str]) -> int:
    """Interrupt the training like Ctrl+C would, so it can record its end; then insist."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S[0]), (signal.SIGTERM, STOP_GRACE_S[1])):
        print(f"memwatch: stopping the training (pid {child.pid}, {sig.name})", file=out)
        _signal_group(child, sig)
        try:
            return _status(child.wait(timeout=grace))
        except subprocess.TimeoutExpired:
            continue
    print(f"memwatch: the training did not stop; killing it (pid {child.pid})", file=out)
    _signal_group(child, signal.SIGKILL)
    return _status(child.wait())


def _signal_group(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the child's whole process group (its DataLoader workers too)."""
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass
    except OSError:
        child.send_signal(sig)


def _status(returncode: int) -> int:
    """A shell-style status: 128 + N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _tail(path: Path, lines: int = 20) -> str:
    from memwatch_tui.logtail import read_tail

    return read_tail(path, lines=lines) or "(no output)"
