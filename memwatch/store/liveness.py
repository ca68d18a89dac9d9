"""Whether the process writing a run file still runs: a live run versus a killed writer.

Shared by the dashboard (stop following a dead run) and the multi-rank report (say
which ranks were killed). Reads nothing but the run's recorded pid, host and start time.
"""

from __future__ import annotations

import os
import socket

from memwatch.records import RunInfo


def writer_alive(info: RunInfo) -> bool | None:
    """Whether the process writing ``info``'s run still runs (None: cannot tell).

    Only answerable on the same host; a run that recorded its end is never alive. This is
    how a file left by a killed writer is told apart from a live run that is between
    commits. A process started after the run began holds a reused pid, not the writer.
    """
    if info.ended_at is not None:
        return False
    if info.host != socket.gethostname():
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return None
    try:
        import psutil

        return bool(psutil.Process(info.pid).create_time() <= info.started_at + 1.0)
    except ImportError:
        return True
    except Exception:  # the process ended meanwhile, or psutil cannot see it
        return None


def run_status(info: RunInfo) -> str:
    """How a run stands, as one word for machines (the JSON report's ``run.status``):
    ``ended`` (it recorded its end), ``recording-stopped`` (a write failed: later steps are
    missing), ``running``, ``killed`` (no end record and its writer is gone) or
    ``unfinished`` (no end record, written on another host: cannot tell)."""
    if info.recording_stopped_at_step is not None:
        return "recording-stopped"
    if info.ended_at is not None:
        return "ended"
    alive = writer_alive(info)
    if alive:
        return "running"
    return "killed" if alive is False else "unfinished"


def run_state(info: RunInfo, last_step: int | None, status: str | None = None) -> str | None:
    """How a run stands, in words, when it did not simply end (None when it did).

    Said by ``report`` and ``check``: a report of a run that is still being written, was
    killed, or stopped recording (a full disk) covers only the steps the file holds.
    ``status``: ``run_status(info)`` when the caller has it already (asking whether the
    writer is alive looks the process up).
    """
    from memwatch.plaintext import plain

    upto = "no step recorded yet" if last_step is None else f"last recorded step {last_step}"
    if status is None:
        status = run_status(info)
    if status == "recording-stopped":
        stopped = info.recording_stopped_at_step
        assert stopped is not None
        where = f"after step {stopped}" if stopped >= 0 else "before its first step"
        reason = plain(info.recording_stopped_reason or "a write failed")
        return f"recording stopped {where}: {reason}; later steps are not in the run file"
    if status == "ended":
        return None
    if status == "running":
        return f"run still running: it is being recorded now ({upto})"
    if status == "killed":
        return f"run killed or crashed: the run file has no end record ({upto})"
    return f"run unfinished: the run file has no end record ({upto}; written on another host)"
