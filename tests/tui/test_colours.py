"""Every cell the dashboard draws names both its colours, so no theme depends on the
terminal's own background or palette (a light theme on a dark terminal, or the other way
round, must not leave text black on black or white on white)."""

from __future__ import annotations

import pytest
from rich.color import ColorType
from rich.segment import Segment
from rich.terminal_theme import MONOKAI, TerminalTheme
from textual._ansi_theme import ALABASTER

from tests.tui.runs import drive, fake_feed, make_app, settle

#: A dark and a light terminal: their default colours and 16-colour palettes differ.
TERMINALS: dict[str, TerminalTheme] = {"dark terminal": MONOKAI, "light terminal": ALABASTER}
THEMES = ("textual-dark", "textual-light")


def terminal_dependent(segment: Segment) -> list[str]:
    """What in ``segment`` takes its colour from the terminal (its default or palette)."""
    style = segment.style
    if style is None:
        return ["no style"]
    problems = []
    # A blank cell shows only its background (unless drawn in reverse video).
    blank = not segment.text.strip() and not style.reverse
    colors = [("background", style.bgcolor)] + ([] if blank else [("foreground", style.color)])
    for name, color in colors:
        if color is None or color.type in (ColorType.DEFAULT, ColorType.STANDARD):
            problems.append(f"{name} {color}")
    return problems


@pytest.mark.parametrize("terminal", TERMINALS)
@pytest.mark.parametrize("theme", THEMES)
@drive
async def test_every_cell_sets_its_own_colours(theme: str, terminal: str, source_dir):
    # GIVEN the dashboard on a run with findings, holders and a source excerpt, in a
    # terminal with a dark or a light background, in the dark or the light theme
    app = make_app(fake_feed(), search_dirs=[source_dir])
    async with app.run_test(size=(100, 30)) as pilot:
        app.ansi_theme_dark = app.ansi_theme_light = TERMINALS[terminal]
        app.theme = theme
        await settle(pilot)
        await pilot.press("tab")  # focus moves: focused borders are drawn too
        await settle(pilot)
        # WHEN the screen is drawn
        strips = app.screen._compositor.render_strips()
        # THEN no cell with text or background leaves a colour to the terminal
        bad = [
            (y, segment.text, problem)
            for y, strip in enumerate(strips)
            for segment in strip
            if segment.text and not segment.control
            for problem in terminal_dependent(segment)
        ]
        assert bad == [], "\n".join(map(repr, bad[:60]))


class TestSixteenColourTerminals:
    def test_a_16_colour_terminal_gets_fixed_256_colours(self):
        # GIVEN tmux/screen's default TERM, which claims 16 colours: theme colours would
        # become the terminal's own palette entries (black text on a dark terminal's black)
        env = {"TERM": "screen"}
        # WHEN the dashboard prepares its colours
        from memwatch_tui import prefer_fixed_colours

        prefer_fixed_colours(env)
        # THEN it draws with the 256-colour palette, the same on every terminal
        assert env["TEXTUAL_COLOR_SYSTEM"] == "256"

    @pytest.mark.parametrize(
        "env",
        [
            {"TERM": "xterm-256color"},
            {"TERM": "screen", "COLORTERM": "truecolor"},
            {"TERM": "screen", "TEXTUAL_COLOR_SYSTEM": "standard"},
            {"TERM": "screen", "NO_COLOR": "1"},
        ],
    )
    def test_capable_terminals_and_the_users_choice_are_left_alone(self, env):
        from memwatch_tui import prefer_fixed_colours

        before = dict(env)
        prefer_fixed_colours(env)
        assert env == before
