"""``memwatch run``: execute a script (or ``-m module``) as ``python`` would, under a watch."""

from __future__ import annotations

import argparse
import os
import runpy
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from memwatch.errors import MemwatchError
from memwatch.units import parse_size

USAGE = (
    "memwatch run [--out PATH] [--budget SIZE] [--track-tensors] [--live] [--no-report] [--deep] "
    "[--snapshot-on-oom] [--snapshot-at-step N] (SCRIPT | -m MODULE) [ARGS...]"
)
_FLAGS = {"--live", "--no-report", "--deep", "--track-tensors", "--snapshot-on-oom"}
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
    options memwatch also has (``train.py --out x`` passes ``--out x`` to train.py).
    """
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in _FLAGS or token in ("-h", "--help"):
            i += 1
        elif token in _VALUED:
            i += 2
        elif any(token.startswith(f"{name}=") for name in _VALUED):
            i += 1
        elif token == "-m":
            return argv[: i + 2], argv[i + 2 :]
        else:
            return argv[:i], argv[i:]
    return argv, []


def run(args: argparse.Namespace) -> int:
    if args.module is None and not args.target:
        raise MemwatchError(f"nothing to run; usage: {USAGE}")
    budget = parse_size(args.budget) if args.budget is not None else None
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
    if args.live:
        if os.environ.get("RANK") is not None:  # one dashboard per rank would fight the tty
            raise MemwatchError(
                "--live is not available under torchrun; watch the ranks from another "
                "terminal with `memwatch tui RUN_DIR --follow`"
            )
        return _run_live(args, target_name, script_args)

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
        snapshot_at_step=args.snapshot_at_step,
        snapshot_on_oom=args.snapshot_on_oom,
    )
    status = _execute(watch, args.module, target_name, script_args)
    if not args.no_report:
        _print_report(watch)
    return status


def _run_live(args: argparse.Namespace, target_name: str, script_args: list[str]) -> int:
    from memwatch.commands.live import run_live
    from memwatch.store.paths import default_run_path

    run_path = Path(args.out) if args.out else default_run_path(target_name)
    log_path = run_path.with_suffix(".log")
    child: list[str] = []
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


def _execute(watch: Any, module: str | None, target: str, script_args: list[str]) -> int:
    """Run the target in this process with ``__name__ == "__main__"``; return its status."""
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    if module is None:
        sys.argv = [target, *script_args]
        script_dir = os.path.dirname(os.path.abspath(target))
    else:
        sys.argv = [module, *script_args]  # runpy replaces argv[0] with the module's path
        script_dir = os.getcwd()
    if sys.path:
        sys.path[0] = script_dir
    else:
        sys.path.append(script_dir)
    status = 0
    restore_sigterm = _exit_cleanly_on_sigterm()
    watch.start()
    try:
        if module is None:
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        status = _exit_status(exc)
    except KeyboardInterrupt:
        traceback.print_exc()
        status = 130
    except BaseException as exc:  # the script's own error: shown as python shows it
        _print_user_traceback(type(exc), exc, exc.__traceback__)
        status = 1
    finally:
        watch.stop(exit_status=status)
        restore_sigterm()
        sys.argv = saved_argv
        if saved_path0 is not None and sys.path:
            sys.path[0] = saved_path0
    return status


def _exit_cleanly_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into SystemExit(143) so the run file records its end.

    torchrun stops the surviving ranks with SIGTERM when one dies; Python's default
    action would kill the process before the last steps are committed. Only replaces the
    default action (a handler the script installs itself wins), main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return lambda: None

    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _print_user_traceback(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """Drop memwatch's and runpy's frames so the traceback starts in the user's script."""
    from memwatch.collect.frames import is_user_file

    first = tb
    while first is not None and not is_user_file(first.tb_frame.f_code.co_filename):
        first = first.tb_next
    traceback.print_exception(exc_type, exc, first if first is not None else tb)


def _print_report(watch: Any) -> None:
    from memwatch.commands.common import load_run

    if watch.info is not None and watch.info.rank is not None and watch.run_path is not None:
        from memwatch.commands.ranks import print_end_of_run_report

        print_end_of_run_report(Path(watch.run_path), watch.info)  # rank 0 merges the ranks
        return

    try:
        if watch.run_path is not None and Path(watch.run_path).exists():
            loaded = load_run(Path(watch.run_path))
            from memwatch.report import render

            text = render(
                "text", loaded.info, loaded.steps, loaded.findings, categories=loaded.categories
            )
        else:
            text = watch.report()
    except MemwatchError as exc:
        print(f"memwatch: could not read the run back: {exc}", file=sys.stderr)
        return
    sys.stderr.write("\n" + text)
    if watch.run_path is not None:
        sys.stderr.write(
            f"  run file         {watch.run_path}\n"
            f"                   (memwatch report / memwatch tui to look again)\n"
        )
        _print_snapshots(Path(watch.run_path))


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
