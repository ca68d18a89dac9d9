"""Make strings read from a run file safe to print: plain text, no control characters.

A run file is data from anywhere (a CI artifact, a colleague's upload), so every string a
view prints from it — script, argv, device, variable, function, file path, finding text —
goes through :func:`plain` first. Terminal escape sequences (ESC, CSI, OSC 8 links, OSC 52
clipboard writes, C1 controls) would otherwise reach the user's terminal and act there:
retitle the window, clear the screen, write the clipboard.

Views that render markup (Rich, Textual) must also treat the result as *text*, never as
markup: build ``rich.text.Text(plain(s))`` rather than passing ``s`` where markup is parsed.
That part is the view's job; this module only removes what a terminal would act on.
"""

from __future__ import annotations

import re
import unicodedata

# C0 controls except tab/newline, DEL, and C1 controls (U+0080..U+009F, which some terminals
# treat as 8-bit CSI/OSC introducers).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Unicode format characters that reorder or hide text (bidi overrides, isolates, zero-width).
_BIDI_AND_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object, *, multiline: bool = False) -> str:
    """Return ``value`` as printable text: every control character shown as an escape.

    Args:
        value: anything; ``None`` becomes ``""`` and non-strings go through ``str``.
        multiline: keep newlines (finding details, source excerpts); otherwise a newline
            is escaped too, so a crafted one-line field cannot fake extra report lines.

    Escaping (``\\x1b``) rather than deleting keeps the text honest: a reader sees that the
    file held something odd instead of a silently altered name.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if not multiline:
        text = text.replace("\n", "\\n")
    text = text.replace("\r", "\\r")
    text = _CONTROL.sub(_escape, text)
    text = _BIDI_AND_INVISIBLE.sub(_escape, text)
    if any(unicodedata.category(c) == "Cs" for c in text):  # lone surrogates can't be printed
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def is_plain(value: str, *, multiline: bool = False) -> bool:
    """True when ``value`` would print unchanged (used by tests and assertions)."""
    return plain(value, multiline=multiline) == value
