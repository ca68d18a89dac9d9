"""The min/max pyramid answers any window like a brute-force scan, and grows with a run."""

from __future__ import annotations

import itertools
from dataclasses import replace

from memwatch_tui.feed import SERIES_COLUMNS, FakeFeed, merge_blocks
from memwatch_tui.index import MinMaxIndex

from tests.tui.runs import make_info, make_steps

RSS = SERIES_COLUMNS.index("rss_bytes")
SPIKE = 99 << 30


def brute(source: FakeFeed, lo: int, hi: int) -> tuple[object, object]:
    whole = merge_blocks(source.block_stats(lo, hi + 1, hi - lo + 1))
    return whole.lows, whole.highs


def spiky_source(n: int, spikes: set[int]) -> FakeFeed:
    steps = [replace(s, rss_bytes=SPIKE) if s.step in spikes else s for s in make_steps(n)]
    return FakeFeed(make_info(), steps)


def test_every_spike_in_the_window_survives_in_some_bucket():
    # GIVEN a 5000-step run with one-step RSS spikes, indexed in blocks of 16
    spikes = {17, 1500, 2222, 4998}
    source = spiky_source(5000, spikes)
    index = MinMaxIndex(0, base=16, fanout=4)
    index.update(source.block_stats(0, 5000, 16))
    for lo, hi in ((0, 4999), (1234, 3999)):
        # WHEN asking for 40 buckets of the window
        buckets = index.query(lo, hi, 40)
        # THEN the buckets are in order, cover the window, and each spike shows
        assert buckets is not None and 10 <= len(buckets) <= 40
        assert all(a.stop == b.start for a, b in itertools.pairwise(buckets))
        assert buckets[0].start <= lo and buckets[-1].stop > hi
        for spike in spikes:
            if lo <= spike <= hi:
                holding = [b for b in buckets if b.start <= spike < b.stop]
                assert holding[0].highs[RSS] == SPIKE


def test_whole_run_extremes_are_exact():
    source = spiky_source(3000, {5, 2999})
    index = MinMaxIndex(0, base=8, fanout=4)
    index.update(source.block_stats(0, 3000, 8))
    merged = merge_blocks(index.query(0, 2999, 30) or [])
    assert (merged.lows, merged.highs) == brute(source, 0, 2999)


def test_too_narrow_a_window_is_left_to_a_direct_read():
    index = MinMaxIndex(0, base=256)
    source = FakeFeed(make_info(), make_steps(1000))
    index.update(source.block_stats(0, 1000, 256))
    assert index.query(0, 999, 100) is None  # 10 steps a column: finer than one block


def test_a_growing_run_replaces_its_partial_last_block():
    # GIVEN an index of 100 steps of a run that then grows to 300
    source = FakeFeed(make_info(), make_steps(100))
    index = MinMaxIndex(0, base=16, fanout=2, depth=3)
    index.update(source.block_stats(0, 100, 16))
    source.append(make_steps(200, start=100))
    # WHEN the tail is read again from where the index says
    start = index.resume_at()
    assert start == 96
    index.update(source.block_stats(start, 300, 16))
    # THEN every level matches an index built in one go
    fresh = MinMaxIndex(0, base=16, fanout=2, depth=3)
    fresh.update(source.block_stats(0, 300, 16))
    assert index.levels == fresh.levels
    assert index.covered_to == 300
    # AND the query reaches the newest step
    assert index.query(0, 299, 4) is not None
    assert index.query(0, 300, 4) is None
