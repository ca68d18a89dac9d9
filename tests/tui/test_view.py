"""The dashboard's pure logic: window arithmetic, down-sampling, panel text (no Textual)."""

from __future__ import annotations

from memwatch_tui.feed import SERIES_COLUMNS, Block
from memwatch_tui.view import (
    Viewport,
    chart_from_blocks,
    cursor_values,
    evidence_rows,
    finding_summary,
    format_elapsed,
    grow,
    holders_title,
    initial_viewport,
    jump,
    move_cursor,
    nice_ticks,
    pan,
    run_state,
    run_title,
    short_count,
    short_size,
    zoom,
)

from memwatch.records import Finding, Holder
from tests.tui.runs import STARTED, GiB, MiB, make_info, make_step


def block(start: int, stop: int, low: int | None, high: int | None) -> Block:
    values = len(SERIES_COLUMNS)
    return Block(start, stop, stop - start, (low,) * values, (high,) * values)


class TestViewport:
    def test_zoom_in_keeps_the_cursor_in_place_and_zoom_out_returns_to_the_whole_run(self):
        # GIVEN the whole run of 1000 steps with the cursor at step 500
        vp = Viewport(0, 999, 0, 999, 500)
        # WHEN zooming in twice
        zoomed = zoom(zoom(vp, 0.5), 0.5)
        # THEN the window is a quarter of the run around the cursor
        assert zoomed.span == 250
        assert zoomed.lo <= 500 <= zoomed.hi
        assert zoomed.cursor == 500
        # AND zooming out twice shows the whole run again
        assert zoom(zoom(zoomed, 2), 2).whole

    def test_zoom_stops_at_a_minimum_window(self):
        vp = Viewport(0, 999, 0, 999, 10)
        for _ in range(20):
            vp = zoom(vp, 0.5)
        assert vp.span == 8
        assert vp.lo <= 10 <= vp.hi

    def test_cursor_past_the_window_edge_pans_the_window(self):
        # GIVEN a window 100..199 of a 1000-step run, cursor at its right edge
        vp = Viewport(0, 999, 100, 199, 199)
        # WHEN the cursor moves right
        moved = move_cursor(vp, 5)
        # THEN the window follows it, keeping its width
        assert moved.cursor == 204
        assert (moved.lo, moved.hi) == (105, 204)

    def test_cursor_stays_inside_the_run(self):
        vp = Viewport(0, 99, 0, 99, 50)
        assert move_cursor(vp, -1000).cursor == 0
        assert move_cursor(vp, 1000).cursor == 99

    def test_moving_back_stops_following(self):
        vp = Viewport(0, 99, 0, 99, 99, follow=True)
        assert not move_cursor(vp, -1).follow
        assert move_cursor(vp, 1).follow

    def test_pan_carries_the_cursor_and_clamps_at_the_ends(self):
        vp = Viewport(0, 999, 100, 199, 150)
        right = pan(vp, 50)
        assert (right.lo, right.hi, right.cursor) == (150, 249, 200)
        assert pan(vp, -5000).lo == 0

    def test_a_followed_zoomed_window_slides_with_new_steps(self):
        # GIVEN a live run followed while zoomed into its newest 100 steps
        vp = Viewport(0, 999, 900, 999, 999, follow=True)
        # WHEN 50 more steps are recorded
        grown = grow(vp, 0, 1049)
        # THEN the window slides to the newest steps and the cursor stays on the newest
        assert (grown.lo, grown.hi, grown.cursor) == (950, 1049, 1049)

    def test_a_whole_run_window_grows_and_an_unfollowed_cursor_stays(self):
        vp = initial_viewport(0, 99, follow=False)
        vp = move_cursor(vp, -9)
        grown = grow(vp, 0, 199)
        assert (grown.lo, grown.hi) == (0, 199)
        assert grown.cursor == 90

    def test_jump_centres_a_step_outside_the_window(self):
        vp = Viewport(0, 999, 800, 899, 850)
        jumped = jump(vp, 100)
        assert jumped.cursor == 100
        assert jumped.lo <= 100 <= jumped.hi
        assert jumped.span == 100


class TestChart:
    def test_a_one_step_spike_survives_down_sampling(self):
        # GIVEN buckets of 100 steps where one step spiked to 9 GiB
        blocks = [block(0, 100, GiB, GiB), block(100, 200, GiB, 9 * GiB), block(200, 300, GiB, GiB)]
        # WHEN turned into plot points
        chart = chart_from_blocks(blocks, 0, 299)
        # THEN every series reaches the spike
        for line in chart.lines:
            assert max(line.ys) == 9 * GiB
            assert len(line.ys) == 4  # flat buckets: one point, the spiky one: min and max

    def test_series_never_measured_are_left_out(self):
        # GIVEN a CPU run: device fields None in every block
        record = make_step(1, cpu=True)
        values = tuple(getattr(record, c) for c in SERIES_COLUMNS)
        chart = chart_from_blocks([Block(1, 2, 1, values, values)], 1, 1)
        # THEN only autograd-saved (in-step peak and step end) and RSS are drawn
        assert chart.columns == ("saved_peak_bytes", "saved_bytes", "rss_bytes")

    def test_points_stay_inside_the_window(self):
        chart = chart_from_blocks([block(0, 1000, 1, 2)], 10, 20)
        assert all(10 <= x <= 20 for line in chart.lines for x in line.xs)

    def test_empty_blocks_draw_nothing(self):
        assert chart_from_blocks([Block(0, 10, 0, (None,) * 6, (None,) * 6)], 0, 9).lines == ()


class TestText:
    def test_sizes_and_counts_are_short(self):
        assert short_size(None) == "-"
        assert short_size(512) == "512B"
        assert short_size(95 * MiB) == "95M"
        assert short_size(1.25 * GiB) == "1.2G"
        assert short_count(950) == "950"
        assert short_count(12_000) == "12k"
        assert short_count(1_500_000) == "1.5M"

    def test_ticks_are_round(self):
        assert nice_ticks(0, 100, 5) == [0, 20, 40, 60, 80, 100]
        assert nice_ticks(0, 4 * GiB, 2, binary=True) == [0, 2 * GiB, 4 * GiB]

    def test_elapsed(self):
        assert format_elapsed(45) == "45s"
        assert format_elapsed(125) == "2:05"
        assert format_elapsed(3723) == "1:02:03"
        assert format_elapsed(3 * 86400 + 3723) == "3d 1:02:03"

    def test_run_states(self):
        # GIVEN a run that recorded its end, one whose writer died, one still writing
        finished = make_info()
        killed = make_info(ended_at=None, exit_status=None)
        # THEN each says what it is
        assert run_state(finished, False, STARTED + 999, None).text == "■ finished in 2:05"
        stopped = run_state(killed, False, STARTED + 999, STARTED + 30)
        assert stopped.state == "stopped" and "30s" in stopped.text
        assert run_state(killed, None, STARTED + 61, None).text == "● live 1:01"
        failed = run_state(make_info(exit_status=3), None, 0, None)
        assert failed.text.endswith("exit 3")

    def test_run_title_is_the_command(self):
        assert run_title(make_info()) == "train.py --lr 0.1"

    def test_cursor_values_follow_the_drawn_series(self):
        values = cursor_values(make_step(0), ("allocated_bytes", "rss_bytes"))
        assert [(c, label, short) for c, label, short, _ in values] == [
            ("allocated_bytes", "alloc", "1.0G"),
            ("rss_bytes", "rss", "3.0G"),
        ]

    def test_evidence_formats_sizes(self):
        rows = dict(evidence_rows({"saved_bytes": 2 * MiB, "steps": 1200, "r2": 0.99871}))
        assert rows == {"saved_bytes": "2.0 MiB", "steps": "1,200", "r2": "0.9987"}

    def test_finding_summary(self):
        finding = Finding("memory-growth", "warning", "t", "d", 7, "f", rank=1)
        assert finding_summary(finding) == "warning · memory-growth · from step 7 · rank 1"

    def test_holders_title_says_which_snapshot_is_nearest(self):
        # GIVEN the cursor at step 127 and the nearest snapshot taken at step 150
        holders = [Holder(150, "total_loss", MiB, 1)]
        # THEN the title names the snapshot's step and that it is the nearest one
        assert holders_title(127, holders) == "holders at step 150 (nearest to 127) · 1.0 MiB"
        assert holders_title(150, holders) == "holders at step 150 · 1.0 MiB"
        assert holders_title(10, []) == "holders · no snapshot yet"
