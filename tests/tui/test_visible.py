"""The timeline pictures the bug a finding reports, on a CPU run recorded without flags.

Hand-made steps with the shapes measured on ``samples/bugs``: ``retain_graph_leak.py``
grows autograd-saved memory ~0.5 MiB a step next to 310-400 MiB of host RSS;
``graph_retained_in_inference.py`` leaves 0 B saved at every step end, but its evaluation
steps (every 10th) peak at 2.5 MiB inside the step against 183 KiB in training steps.
On one linear axis with RSS both were flat lines; each now fills its own pane.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from memwatch_tui.chart import Row, draw
from memwatch_tui.feed import FakeFeed
from memwatch_tui.widgets import FindingsList, Timeline

from memwatch.records import Finding, StepRecord
from tests.tui.runs import MiB, drive, make_app, make_info, make_step, settle

pytestmark = pytest.mark.timeout(60)
KiB = 1024
CPU = {"device_type": "cpu", "device_name": "cpu", "device_total_bytes": None}


def cpu_step(step: int, saved: int, saved_peak: int, rss: int) -> StepRecord:
    return replace(
        make_step(step, cpu=True),
        saved_bytes=saved,
        saved_peak_bytes=saved_peak,
        saved_stale_bytes=saved,
        rss_bytes=rss,
    )


def retain_graph_run() -> FakeFeed:
    steps = [
        cpu_step(s, 1 * MiB + s * 548 * KiB, 1 * MiB + s * 560 * KiB, 311 * MiB + s * 1500 * KiB)
        for s in range(60)
    ]
    finding = Finding(
        "retain-graph-leak", "error", "loss.backward(retain_graph=True) keeps graphs", "", 0, "fix"
    )
    return FakeFeed(make_info(**CPU), steps, findings=[finding])


EVAL_STEPS = list(range(10, 61, 10))


def eval_spike_run() -> FakeFeed:
    steps = [
        cpu_step(s, 0, (2580 if s in EVAL_STEPS else 183) * KiB, 318 * MiB + (s // 10) * MiB)
        for s in range(61)
    ]
    finding = Finding(
        "graph-retained-in-inference",
        "error",
        "16 forwards of `model` with grad enabled kept 2.5 MiB of graphs alive",
        "",
        10,
        "fix",
        evidence={"steps": EVAL_STEPS},
    )
    return FakeFeed(make_info(**CPU), steps, findings=[finding])


def dots(rows: list[Row], role: str) -> dict[int, list[int]]:
    """Screen column -> rows holding a dot of series ``role``."""
    found: dict[int, list[int]] = {}
    for y, row in enumerate(rows):
        x = 0
        for run in row:
            if run.role == role:
                for i, char in enumerate(run.text):
                    if char != " ":
                        found.setdefault(x + i, []).append(y)
            x += len(run.text)
    return found


TITLES = ("device memory", "autograd saved", "host RSS")


def pane_rows(rows: list[Row], title: str) -> range:
    """The plot rows of the pane titled ``title``: to the next pane or the step axis."""

    def titled(row: Row, name: str) -> bool:
        return name in "".join(r.text for r in row if r.role in ("label", "focus"))

    starts = [y for y, row in enumerate(rows) if titled(row, title)]
    assert len(starts) == 1, f"no single pane titled {title!r}"
    ends = [
        y
        for y, row in enumerate(rows)
        if y > starts[0] and (row[1].text == "└" or any(titled(row, t) for t in TITLES))
    ]
    top = starts[0]
    if all(r.role in ("label", "focus", "axis", "") for r in rows[top]):
        top += 1  # the title has a row of its own: the plot starts below it
    return range(top, ends[0])


async def drawn(app, pilot) -> list[Row]:  # type: ignore[no-untyped-def]
    await settle(pilot)
    timeline = app.query_one(Timeline)
    assert timeline.data is not None
    data = replace(
        timeline.data,
        lines=tuple(x for x in timeline.data.lines if x.column not in timeline.hidden),
    )
    return draw(
        data,
        timeline.cursor,
        timeline.size.width,
        timeline.size.height,
        "",
        timeline.focus_pane,
        timeline.marks,
    )


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
@drive
async def test_a_retain_graph_leak_climbs_through_its_own_pane(size):
    # GIVEN a CPU run whose autograd-saved memory grows 0.5 MiB a step next to 300+ MiB RSS
    app = make_app(retain_graph_run())
    async with app.run_test(size=size) as pilot:
        rows = await drawn(app, pilot)
        # THEN the autograd pane's own axis makes the growth climb from its bottom row to
        # its top row, left to right (on RSS's axis it was a flat line at 0 B)
        pane = pane_rows(rows, "autograd saved ◀ finding")
        saved = dots(rows, "saved_bytes")
        first, last = min(saved), max(saved)
        assert max(saved[first]) == pane[-1] and min(saved[last]) == pane[0]
        # AND the selected finding's pane is the one marked
        assert app.query_one(Timeline).focus_pane == "autograd"
        # AND the series run to the right edge of the plot at every size (the step axis
        # and the plot share one width)
        assert last == size[0] - 1
        # AND host memory has its own pane
        pane_rows(rows, "host RSS")


@drive
async def test_evaluation_spikes_show_as_in_step_peaks():
    # GIVEN a CPU run whose evaluation steps keep graphs alive inside the step only
    app = make_app(eval_spike_run())
    async with app.run_test(size=(80, 24)) as pilot:
        rows = await drawn(app, pilot)
        pane = pane_rows(rows, "autograd saved ◀ finding")
        peaks = dots(rows, "saved_peak_bytes")
        # THEN the in-step peak reaches the top of the autograd pane at the evaluation
        # steps only, and sits at its bottom in between
        tops = sorted(col for col, ys in peaks.items() if min(ys) == pane[0])
        assert 5 <= len(tops) <= 12  # one or two columns per evaluation step
        between = [col for col in peaks if all(abs(col - t) > 3 for t in tops)]
        assert all(min(peaks[col]) >= pane[-1] - 1 for col in between)
        assert len(tops) < len(dots(rows, "saved_bytes")) / 4  # the rest is the baseline
        # AND the finding's steps are marked on the step axis
        axis = "".join(run.text for run in rows[-2])
        assert axis.count("▲") == len(EVAL_STEPS)


@drive
async def test_number_keys_follow_the_numbered_legend_on_a_cpu_run():
    # GIVEN a CPU run: three series, numbered 1-3 in the legend
    app = make_app(eval_spike_run())
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.chart is not None
        assert app.chart.columns == ("saved_peak_bytes", "saved_bytes", "rss_bytes")
        # WHEN 3 is pressed, then 1
        await pilot.press("3")
        await pilot.press("1")
        await pilot.pause()
        # THEN RSS and the saved peak are hidden; 4 and 5 name no series and change nothing
        assert app.query_one(Timeline).hidden == {"rss_bytes", "saved_peak_bytes"}
        await pilot.press("4", "5")
        assert app.query_one(Timeline).hidden == {"rss_bytes", "saved_peak_bytes"}
        # AND with every series of the host pane hidden, the other panes take its rows
        rows = await drawn(app, pilot)
        assert not any("host RSS" in run.text for row in rows for run in row)
        assert app.query_one(FindingsList).findings
