"""memwatch.plaintext: strings from a run file print as plain text."""

from __future__ import annotations

import pytest

from memwatch.plaintext import is_plain, plain

ATTACKS = [
    "\x1b]0;owned\x07",  # OSC: retitle the terminal
    "\x1b[2J\x1b[H",  # CSI: clear the screen
    "\x1b]8;;file:///etc/passwd\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "\x1b]52;c;ZWNobyBwd24=\x07",  # OSC 52: write the clipboard
    "\x9b31m",  # C1 CSI
    "name\u202egnp.py",  # bidi override
    "a\rb",  # carriage return hides the start of a line
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_control_sequences_are_escaped_not_printed(attack: str) -> None:
    # GIVEN a field a crafted run file could hold
    # WHEN it is made plain
    shown = plain(attack)
    # THEN no control or format character survives, and the odd bytes are visible as escapes
    assert all(c.isprintable() for c in shown)
    assert "\\" in shown


def test_newlines_are_escaped_in_one_line_fields_and_kept_in_multiline_text() -> None:
    assert plain("a\nb") == "a\\nb"
    assert plain("a\nb\tc", multiline=True) == "a\nb\tc"


def test_ordinary_text_is_unchanged() -> None:
    for text in ["running_loss", "train.py:41 in main", "holds 5.5 KiB · since step 0", "ü €"]:
        assert is_plain(text)
    assert plain(None) == ""
    assert plain(42) == "42"


def test_lone_surrogates_do_not_break_printing() -> None:
    shown = plain("x\ud800y")
    shown.encode("utf-8")  # THEN it can be written to any UTF-8 terminal
