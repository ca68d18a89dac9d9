"""memwatch's own messages to the user: one channel, and never an exception in their code.

memwatch runs inside someone else's program, often under ``python -W error`` or pytest's
``filterwarnings = error``. A message sent through :mod:`warnings` there becomes an
exception raised inside ``optimizer.step()`` or ``loss.backward()``, and memwatch would
crash the training it watches. So memwatch's internal notices (a part switched off after
an internal error, the run file could not be written) never go through the warnings
machinery: they are written to stderr as one plain ``memwatch: ...`` line, where no
warning filter applies, and writing them can never raise.
"""

from __future__ import annotations

import sys
import threading

from memwatch.plaintext import plain

_lock = threading.Lock()
_said: set[str] = set()


def notice(message: str, *, once: str | None = None) -> None:
    """Tell the user ``message`` on stderr as ``memwatch: ...`` (once per ``once`` key).

    Never raises: a closed or missing stderr just loses the line.
    """
    if once is not None:
        with _lock:
            if once in _said:
                return
            _said.add(once)
    text = plain(message, multiline=True)
    if not text.startswith(("memwatch: ", "memwatch [")):  # "memwatch [rank 1]: ..." stays
        text = f"memwatch: {text}"
    try:
        stream = sys.stderr
        if stream is None:
            return
        stream.write(text + "\n")
        stream.flush()
    except Exception:
        pass
