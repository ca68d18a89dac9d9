"""A crafted run file cannot act through the dashboard: every stored string is plain text.

The corpus puts Rich/Textual markup (a live ``@click`` action that writes a file, a
closing tag that would crash the parser, a theme variable) and terminal control sequences
(OSC title and clipboard writes, OSC 8 links, CSI clear-screen, C1 controls, bidi
overrides) into every field the dashboard shows: script, argv, device, torch, finding
texts, variable, locations, evidence keys and values, holder names.
"""

from __future__ import annotations

import re

from memwatch_tui.widgets import FindingsList
from rich.segment import Segment

from memwatch.records import Finding, Holder, Location
from tests.tui.runs import MiB, drive, make_app, make_info, make_steps, settle

CLICK = "[@click=app.screenshot('x','/tmp')]click me[/]"
CORPUS = (
    f"{CLICK}[/oops][b]bold[/b]$text-muted"
    "\x1b]0;pwned\x07\x1b[2J\x9b31m\x1b]52;c;SGVsbG8=\x07"
    "\x1b]8;;http://example.invalid\x1b\\link\x1b]8;;\x1b\\\u202eevil\x00\x7f"
)
#: What a terminal would act on: C0/C1 controls, DEL, bidi overrides and isolates.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def crafted_feed():  # type: ignore[no-untyped-def]
    from memwatch_tui.feed import FakeFeed

    where = Location(f"{CORPUS}.py", 3, CORPUS)
    finding = Finding(
        kind=f"graph-accumulation{CORPUS}",
        severity="error",
        title=f"[/oops] {CORPUS}",
        detail=f"detail {CORPUS}\nsecond line {CORPUS}",
        first_step=2,
        fix=f"fix {CORPUS}",
        location=where,
        variable=CORPUS,
        bytes=MiB,
        evidence={CORPUS: CORPUS, "steps": [3, 4], "list": [CORPUS]},
    )
    info = make_info(
        script=f"{CORPUS}.py",
        argv=(f"{CORPUS}.py", CORPUS),
        device_name=CORPUS,
        torch=CORPUS,
        device_type="cpu",
        device_total_bytes=None,
    )
    holders = [Holder(5, f"[/oops]{CORPUS}", MiB, 1, where)]
    return FakeFeed(info, make_steps(20, cpu=True), holders, [finding], label=f"{CORPUS}.db")


def screen_segments(app) -> list[Segment]:  # type: ignore[no-untyped-def]
    return [s for strip in app.screen._compositor.render_strips() for s in strip]


def check_screen(app) -> str:  # type: ignore[no-untyped-def]
    """The screen's text, after checking no cell holds a control character or a live link."""
    segments = screen_segments(app)
    text = "".join(s.text for s in segments if not s.control)
    assert CONTROL.search(text) is None, repr(CONTROL.search(text))
    for segment in segments:
        style = segment.style
        if style is not None:
            assert not style.link, f"a live link: {segment!r}"
            assert "@click" not in (style.meta or {}), f"a live action: {segment!r}"
    return text


@drive
async def test_markup_and_control_characters_in_a_run_show_as_plain_text():
    # GIVEN a run whose every stored string holds markup and terminal control sequences
    app = make_app(crafted_feed())
    async with app.run_test(size=(160, 50)) as pilot:
        # WHEN the dashboard shows it: header, timeline, findings, holders, detail
        await settle(pilot)
        await pilot.press("home", *["right"] * 5)
        await settle(pilot)
        # THEN it did not crash on "[/oops]", and nothing on screen is a control
        # character, a link or a click action
        text = check_screen(app)
        # AND the markup is shown literally, escaped controls visible as text
        assert "[/oops]" in text
        assert "[b]bold[/b]" in text
        assert "\\x1b]0;pwned" in text
        assert app.query_one(FindingsList).findings is not None
        # WHEN the finding's detail is opened full-screen
        await pilot.press("d")
        await settle(pilot)
        # THEN the same holds there
        full = check_screen(app)
        assert "fix [@click=app.screenshot" in full
        assert "$text-muted" in full
