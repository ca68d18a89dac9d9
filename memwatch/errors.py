"""Errors memwatch raises on purpose: each carries the one line a user should read."""

from __future__ import annotations


class MemwatchError(Exception):
    """A problem with the user's input (a path, a size, a run file) rather than a bug.

    The CLI prints ``memwatch: <message>`` and exits with ``exit_code``; it never shows a
    traceback for these.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class RunFileError(MemwatchError):
    """A run file that is missing, corrupt, foreign, or of an unknown schema version."""
