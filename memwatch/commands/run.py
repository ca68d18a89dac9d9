"""``memwatch run``: execute a script (or ``-m module``) as ``python`` would, under a watch."""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from memwatch.commands.tui import has_terminal
from memwatch.errors import MemwatchError
from memwatch.units import parse_budget

USAGE = (
    "memwatch run [--out PATH] [--force] [--budget SIZE] [--track-tensors] [--live] "
    "[--no-report] [--deep] [--snapshot-on-oom] [--snapshot-at-step N] "
    "(SCRIPT | -m MODULE) [ARGS...]"
)
_FLAGS = {"--live", "--no-report", "--deep", "--track-tensors", "--force", "--snapshot-on-oom"}
_VALUED = {"--out", "--budget", "--snapshot-at-step"}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        usage=USAGE,
        help="run a training script under memwatch and report on it",
        description="Run SCRIPT (or -m MODULE) exactly as `python SCRIPT ARGS` would, record "
        "its memory per training step into a run file, and print a report at the end.",
    )
    parser.add_argument(
        "--out",
        metavar="PATH",
        help="run file (default memwatch-runs/...); under torchrun a run directory, "
        "one <script>-rank<N>.db per rank",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier memwatch run file at --out (never any other file)",
    )
    parser.add_argument(
        "--budget", metavar="SIZE", help="behave as if the device had SIZE bytes (512MiB, 2GB)"
    )
    parser.add_argument("--live", action="store_true", help="show the dashboard while it runs")
    parser.add_argument("--no-report", action="store_true", help="print no report at the end")
    parser.add_argument(
        "--deep", action="store_true", help="also run the expensive checks (slower)"
    )
    parser.add_argument(
        "--track-tensors",
        action="store_true",
        help="on CPU, record live tensor bytes per step (per-op tracking: slower)",
    )
    parser.add_argument(
        "--snapshot-on-oom",
        action="store_true",
        help="on CUDA, write a PyTorch memory snapshot (memory_viz) at the first OOM",
    )
    parser.add_argument(
        "--snapshot-at-step",
        type=int,
        metavar="N",
        help="on CUDA, write a PyTorch memory snapshot at the end of step N",
    )
    parser.add_argument("-m", dest="module", metavar="MODULE", help="run a module as a script")
    parser.add_argument("target", nargs="?", metavar="SCRIPT")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    parser.set_defaults(handler=run, split_argv=split_run_argv)


def split_run_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split ``run``'s own options from the script and its arguments.

    Everything from SCRIPT (or from ``-m MODULE``) on belongs to the script, even
    options memwatch also has (``train.py --out x`` passes ``--out x`` to train.py). An
    option memwatch does not know, before SCRIPT, is refused as unknown (rather than taken
    for the script's name: ``MemwatchError``). A value is joined to
    its option (``--budget=-1GB``) so that one starting with ``-`` reaches the size check.
    """
    head: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in _FLAGS or token in ("-h", "--help"):
            head.append(token)
            i += 1
        elif token in _VALUED:
            head.append(f"{token}={argv[i + 1]}" if i + 1 < len(argv) else token)
            i += 2
        elif any(token.startswith(f"{name}=") for name in _VALUED):
            head.append(token)
            i += 1
        elif token == "-m":
            return [*head, *argv[i : i + 2]], argv[i + 2 :]
        elif token == "--":
            return head, argv[i + 1 :]
        elif token.startswith("-") and len(token) > 1:
            raise MemwatchError(
                f"unknown option {token!r} for memwatch run (its options go before SCRIPT; "
                "see memwatch run --help)"
            )
        else:
            return head, argv[i:]
    return head, []


def run(args: argparse.Namespace) -> int:
    if args.module is None and not args.target:
        raise MemwatchError(f"nothing to run; usage: {USAGE}")
    budget = parse_budget(args.budget) if args.budget is not None else None
    if args.module is None:
        script = Path(args.target)
        if not script.is_file():
            raise MemwatchError(f"can't open file {str(script)!r}: no such file")
        target_name = str(script)
    else:
        target_name = args.module
    script_args = list(args.args or [])
    if args.module is not None and args.target:
        script_args = [args.target, *script_args]
    if args.live and not has_terminal():
        print(
            "memwatch: --live needs a terminal (stdin and stdout are not both one); "
            "running without the dashboard",
            file=sys.stderr,
        )
        args.live = False
    if args.live:
        if os.environ.get("RANK") is not None:  # one dashboard per rank would fight the tty
            raise MemwatchError(
                "--live is not available under torchrun; watch the ranks from another "
                "terminal with `memwatch tui RUN_DIR --follow`"
            )
        return _run_live(args, target_name, script_args)

    # What `python SCRIPT` would refuse (a syntax error, -m of a missing module) is shown
    # exactly as python shows it, before anything is watched: no run file, no report.
    prepared = _prepare(args.module, target_name)
    if isinstance(prepared, int):
        return prepared

    from memwatch.session import Watch

    argv0 = target_name if args.module is None else args.module
    watch = Watch(
        out=args.out,
        budget=budget,
        script=target_name,
        argv=[argv0, *script_args],
        analysis="deep" if args.deep else "default",
        track_tensors=args.track_tensors,
        live_warnings=True,
        force=args.force,
        snapshot_at_step=args.snapshot_at_step,
        snapshot_on_oom=args.snapshot_on_oom,
    )
    report = None if args.no_report else _print_report
    return _execute(watch, args.module, prepared, script_args, report, argv0=target_name)


def _run_live(args: argparse.Namespace, target_name: str, script_args: list[str]) -> int:
    from memwatch.commands.live import run_live
    from memwatch.store.paths import default_run_path

    run_path = Path(args.out) if args.out else default_run_path(target_name)
    log_path = run_path.with_suffix(".log")
    child: list[str] = ["--force"] if args.force else []
    if args.budget:
        child += ["--budget", args.budget]
    if args.deep:
        child.append("--deep")
    if args.track_tensors:
        child.append("--track-tensors")
    if args.snapshot_on_oom:
        child.append("--snapshot-on-oom")
    if args.snapshot_at_step is not None:
        child += ["--snapshot-at-step", str(args.snapshot_at_step)]
    child += ["-m", args.module] if args.module else [target_name]
    return run_live([*child, *script_args], run_path, log_path)


def _prepare(module: str | None, target: str) -> str | int:
    """Check the target as python would before running it: the path to run (a script's
    absolute path, as python runs it, or the module name), or python's exit status 1 after
    printing python's own message (syntax error, missing module, failing package import)."""
    if module is None:
        path = os.path.abspath(target)
        try:
            with open(path, "rb") as fh:
                compile(fh.read(), path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            traceback.print_exception(type(exc), exc, None)
            return 1
        except (OSError, ValueError) as exc:  # unreadable, or null bytes in the source
            print(f"{sys.executable}: can't open file {path!r}: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, OSError) else 1
        return path
    details = getattr(runpy, "_get_module_details", None)
    if details is None:
        return module
    not_found: type[BaseException] = getattr(runpy, "_Error", ImportError)
    saved_path0 = sys.path[0] if sys.path else None
    _set_path0(os.getcwd())
    try:
        details(module, not_found)
    except not_found as exc:  # what python -m prints for a module it cannot find
        print(f"{sys.executable}: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:  # the package's own import failed: python's traceback
        print_user_traceback(type(exc), exc, exc.__traceback__)
        if isinstance(exc, KeyboardInterrupt):
            _ended_by_ctrl_c()
            return 130
        return 1
    finally:
        if saved_path0 is not None:
            sys.path[0] = saved_path0
    return module


def _set_path0(directory: str) -> None:
    if sys.path:
        sys.path[0] = directory
    else:
        sys.path.append(directory)


def _execute(
    watch: Any,
    module: str | None,
    target: str,
    script_args: list[str],
    report: Callable[[Any], None] | None,
    argv0: str | None = None,
) -> int:
    """Run the target in this process with ``__name__ == "__main__"``; return its status.

    ``target`` is the script's absolute path (as python runs it) or the module name;
    ``argv0`` the script as given on the command line (python's ``sys.argv[0]``).
    """
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    script_dir = os.path.dirname(target) if module is None else os.getcwd()
    status = 0
    try:
        watch.start()  # an unusable --out stops here, before the script runs
    except KeyboardInterrupt:  # Ctrl-C before the run started: no run, no report
        print("KeyboardInterrupt", file=sys.stderr)
        _ended_by_ctrl_c()
        return 130
    restore_sigterm = _record_then_die_on_sigterm(watch, report)
    if module is None:
        sys.argv = [argv0 or target, *script_args]
    else:
        sys.argv = [module, *script_args]  # runpy replaces argv[0] with the module's path
    _set_path0(script_dir)
    try:
        if module is None:
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        status = _exit_status(exc)
    except KeyboardInterrupt as exc:
        print_user_traceback(type(exc), exc, exc.__traceback__)
        status = 130
        _ended_by_ctrl_c()
    except BaseException as exc:  # the script's own error: shown as python shows it
        watch.note_exception(exc)
        print_user_traceback(type(exc), exc, exc.__traceback__)
        status = 1
    finally:
        watch.stop(exit_status=status)  # a SIGTERM meanwhile waits until this is done
        restore_sigterm()
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path:
            sys.path[0] = saved_path0
    if report is not None:
        report(watch)
    return status


#: Set when Ctrl-C (KeyboardInterrupt) ended the script: the ``memwatch`` command then
#: dies by SIGINT after the report, as python does (``cli.console_main``); ``main()``
#: called as a function just returns 130.
ended_by_ctrl_c = False


def _ended_by_ctrl_c() -> None:
    global ended_by_ctrl_c
    ended_by_ctrl_c = True


def _record_then_die_on_sigterm(
    watch: Any, report: Callable[[Any], None] | None
) -> Callable[[], None]:
    """On SIGTERM: record the run's end (and print the report), then die of SIGTERM.

    Plain python dies of SIGTERM at once (status 143 in a shell); a SystemExit instead
    would be swallowed by a bare ``except:`` in the script, and training would go on while
    the scheduler waits to SIGKILL it. So the handler only records the end, restores the
    default action and sends the signal again: the process ends exactly as it would have.
    A signal that arrives while memwatch's own code runs (a hook, a commit) is handled a
    moment later, once the program is back in its own code, so memwatch never stops
    itself half-way through a step. Only replaces the default action (a handler the
    script installs itself wins), main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    deferred = [0]

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if _inside_memwatch(frame) and deferred[0] < MAX_DEFERRALS:
            deferred[0] += 1
            timer = threading.Timer(0.01, os.kill, (os.getpid(), signum))
            timer.daemon = True
            timer.start()
            return
        signal.signal(signum, signal.SIG_DFL)
        try:
            watch.stop(exit_status=128 + signum)
            if report is not None:
                report(watch)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os.kill(os.getpid(), signum)
            time.sleep(1.0)  # the default action ends the process before this returns
            os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


#: How often (every 10 ms) a SIGTERM landing in memwatch's own code is put off, at most.
MAX_DEFERRALS = 200
_MEMWATCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")


def _inside_memwatch(frame: FrameType | None) -> bool:
    """Whether the interrupted code is memwatch's own: walking out from the interrupted
    frame, a memwatch frame comes before any frame of the user's (torch's and the standard
    library's frames in between do not decide)."""
    from memwatch.collect.frames import is_user_file

    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(_MEMWATCH_DIR):
            return not filename.startswith(_COMMANDS_DIR)
        if is_user_file(filename):
            return False
        frame = frame.f_back
    return False


_COMMANDS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _hidden_frame(filename: str) -> bool:
    """memwatch's and runpy's frames: python's own traceback of the script has neither."""
    return (
        filename.startswith(_MEMWATCH_DIR)
        or filename == "<frozen runpy>"
        or os.path.basename(filename) == "runpy.py"
    )


def _without_hidden_frames(te: traceback.TracebackException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if not _hidden_frame(f.filename)]
    )
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            _without_hidden_frames(chained, seen)


def print_user_traceback(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """Print the traceback python would print for the script: without memwatch's frames
    (its CLI, runpy, and its hooks, which may sit between the user's frames) and runpy's."""
    te = traceback.TracebackException(exc_type, exc, tb, compact=True)
    _without_hidden_frames(te, set())
    sys.stderr.write("".join(te.format()))
    sys.stderr.flush()


def _print_report(watch: Any) -> None:
    """The end-of-run report on stderr; it names the run file only if one was written, and
    says where recording stopped if the run file could not be written to the end."""
    from dataclasses import replace

    from memwatch.commands.common import load_run
    from memwatch.plaintext import plain
    from memwatch.report import render
    from memwatch.store.liveness import run_state

    if watch.info is None:  # the watch could not start: its notice said so, nothing to report
        return
    if watch.info.rank is not None and watch.run_path is not None:
        from memwatch.commands.ranks import print_end_of_run_report

        print_end_of_run_report(Path(watch.run_path), watch.info)  # rank 0 merges the ranks
        return
    stopped = watch.recording_stopped
    try:
        if watch.run_path is not None and Path(watch.run_path).exists():
            loaded = load_run(Path(watch.run_path))
            info = loaded.info
            if stopped is not None and info.recording_stopped_at_step is None:
                # the end record itself could not be written: the watch knows what happened
                info = replace(
                    info, recording_stopped_at_step=stopped[0], recording_stopped_reason=stopped[1]
                )
            last = loaded.steps[-1].step if loaded.steps else None
            state = run_state(info, last)
            text = render(
                "text",
                info,
                loaded.steps,
                loaded.findings,
                state=state,
                categories=loaded.categories,
            )
        else:
            text = watch.report()
    except MemwatchError as exc:
        print(f"memwatch: could not read the run back: {exc}", file=sys.stderr)
        return
    sys.stderr.write("\n" + plain(text, multiline=True))
    if watch.run_path is not None:
        sys.stderr.write(
            f"  run file         {plain(watch.run_path)}\n"
            f"                   (memwatch report / memwatch tui to look again)\n"
        )
        _print_snapshots(Path(watch.run_path))
    sys.stderr.flush()


def _print_snapshots(path: Path) -> None:
    """The CUDA memory snapshots the run wrote (--snapshot-*), for memory_viz."""
    from memwatch.plaintext import plain
    from memwatch.store import RunReader

    try:
        with RunReader(path) as reader:
            events = reader.events("snapshot")
    except MemwatchError:
        return
    for event in events:
        where = plain(event.data.get("path", "?"))
        sys.stderr.write(f"  memory snapshot  {where} (step {event.step}; open in memory_viz)\n")
