"""The tail of the training script's output file (``memwatch run --live`` logs it there)."""

from __future__ import annotations

from pathlib import Path


def read_tail(path: Path, lines: int = 200, max_bytes: int = 32_768) -> str:
    """The last ``lines`` lines of ``path``, reading at most ``max_bytes`` from its end.

    Bounded so a refresh costs the same after hours of output; progress bars' carriage
    returns count as line ends. A missing file reads as empty.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(text.splitlines()[-lines:])
