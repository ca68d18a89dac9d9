"""The ``memwatch`` command line: ``run``, ``report``, ``tui``, ``check``.

The commands and exit codes are the README's CLI table (changes: docs/contracts.md).

``main(argv) -> int`` never lets a memwatch error escape as a traceback: bad input gets
one ``memwatch: ...`` line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from memwatch.commands import baseline, check, diff, export, report, run, tui
from memwatch.errors import MemwatchError


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line (exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="memwatch",
        description="Find the memory bugs of PyTorch training loops and name the culprit.",
    )
    parser.add_argument("--version", action="version", version=f"memwatch {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in (run, report, tui, check, diff, baseline, export):
        command.add_parser(subparsers)
    return parser


def _version() -> str:
    from memwatch import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    tail: list[str] = []
    if args_list and args_list[0] == "run":
        try:
            head, tail = run.split_run_argv(args_list[1:])
        except MemwatchError as exc:
            print(f"memwatch: {exc}", file=sys.stderr)
            return exc.exit_code
        args_list = ["run", *head]
    run.ended_by_ctrl_c = False
    args = parser.parse_args(args_list)
    if getattr(args, "command", None) is None:
        parser.print_help()
        return 2
    if args.command == "run" and tail:
        args.target, args.args = (tail[0], tail[1:]) if args.module is None else (None, tail)
    try:
        return int(args.handler(args))
    except MemwatchError as exc:
        print(f"memwatch: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        run.ended_by_ctrl_c = True
        return 130


#: ``memwatch ... | head -1``: the reader went away. A shell reports a process killed by
#: SIGPIPE as 128 + 13; memwatch exits with that status (check's 1 and bad input's 2 stay
#: unambiguous), silently, as ``cat`` or ``grep`` end there.
BROKEN_PIPE_STATUS = 141


def console_main() -> NoReturn:
    """The ``memwatch`` command (and ``python -m memwatch``): ``main()``, then end the
    process the way python would.

    * A closed stdout (``memwatch report RUN | head -1``) ends the command quietly with
      status 141, stdout pointed at devnull so that the interpreter's own final flush
      cannot raise again (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
    * Ctrl-C: once the run's end is recorded and the report printed, the process dies by
      SIGINT, as python does for an uncaught KeyboardInterrupt (since 3.8), so the shell
      or a parent script sees a signal death (a bash loop stops, ``returncode == -2``).
    """
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(BROKEN_PIPE_STATUS)
    if run.ended_by_ctrl_c:
        _die_by_sigint()
    sys.exit(status)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _die_by_sigint() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if sys.platform != "win32":
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    sys.exit(130)  # where the signal cannot end the process (Windows): python's status


if __name__ == "__main__":
    console_main()
