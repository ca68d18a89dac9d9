"""Building styled text from run-file strings without letting them act as markup.

Every string a run file holds is untrusted: ``[@click=app.screenshot(...)]`` in a holder
name would be a live link and ``[/oops]`` a crash if it reached a markup parser, and an
ESC sequence would act on the terminal. Widgets therefore write their layout as a fixed
markup template and pass every stored string as a ``$variable``: Textual inserts
variables as plain text, after ``memwatch.plaintext.plain`` has escaped control
characters.
"""

from __future__ import annotations

from textual.content import Content

from memwatch.plaintext import plain


def styled(template: str, **values: object) -> Content:
    """``template`` (trusted markup) with each ``$name`` replaced by ``plain(value)``."""
    return Content.from_markup(template, **{k: plain(v) for k, v in values.items()})


def styled_lines(template: str, **values: object) -> Content:
    """Like ``styled``, keeping newlines in the values (finding details, notes)."""
    return Content.from_markup(template, **{k: plain(v, multiline=True) for k, v in values.items()})


def join(parts: list[Content], separator: str = "\n") -> Content:
    """``parts`` joined by ``separator``."""
    return Content(separator).join(parts)
