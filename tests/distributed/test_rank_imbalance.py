"""The ``rank-imbalance`` detector, judged on hand-made step records of several ranks."""

from __future__ import annotations

from memwatch.analysis.detectors.loop_common import theil_sen
from memwatch.analysis.detectors.rank_imbalance import KIND, detect_rank_imbalance, rank_stats
from tests.distributed.records import MiB, step, steps


def test_a_rank_whose_saved_memory_grows_is_named_with_how_far_apart() -> None:
    # GIVEN two ranks of 12 steps; rank 1 keeps 1 MiB more of autograd-saved memory each step
    ranks = {0: steps(12), 1: steps(12, saved=lambda i: i * MiB)}
    # WHEN the ranks are compared
    findings = detect_rank_imbalance(ranks)
    # THEN one finding names rank 1, its growth, and the other rank's flat line
    assert [(f.kind, f.rank, f.severity) for f in findings] == [(KIND, 1, "warning")]
    finding = findings[0]
    assert finding.growth_per_step_bytes == MiB
    assert finding.evidence["metric"] == "saved_growth_per_step_bytes"
    assert finding.evidence["metrics"]["saved_growth_per_step_bytes"]["per_rank"] == {
        "0": 0,
        "1": MiB,
    }
    assert finding.title == "rank 1: saved tensors +1.0 MiB/step vs +0 B/step"
    # AND the peak gap (11 MiB kept at the end) is reported as the bytes it holds
    assert finding.bytes == 11 * MiB
    assert finding.first_step == 3  # judged after the warmup steps


def test_balanced_ranks_with_noisy_rss_give_nothing() -> None:
    # GIVEN four ranks whose RSS wobbles by megabytes and whose saved memory is flat
    wobble = [0, 3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    ranks = {
        r: [step(i, rss=(300 + r * 5 + wobble[(i + r) % 12]) * MiB) for i in range(12)]
        for r in range(4)
    }
    # WHEN the ranks are compared
    # THEN no rank stands apart
    assert detect_rank_imbalance(ranks) == []


def test_tiny_runs_never_fire_however_large_the_ratio() -> None:
    # GIVEN a tiny model: rank 1 keeps 10x the saved bytes of rank 0 and grows 4 KiB/step
    ranks = {
        0: [step(i, saved=1000, rss=None) for i in range(20)],
        1: [step(i, saved=10_000 + i * 4096, rss=None) for i in range(20)],
    }
    # WHEN the ranks are compared
    # THEN the absolute minimums keep it quiet
    assert detect_rank_imbalance(ranks) == []


def test_one_rank_with_a_far_higher_device_peak_is_flagged_among_eight() -> None:
    # GIVEN eight ranks near 10 GiB of device memory; rank 5 peaks at 14 GiB (a bigger shard)
    base = 10 * 1024 * MiB
    ranks = {
        r: steps(10, allocated=base + (4 * 1024 * MiB if r == 5 else r * 20 * MiB))
        for r in range(8)
    }
    # WHEN the ranks are compared
    findings = detect_rank_imbalance(ranks)
    # THEN only rank 5 is named, by its peak and how many times the others' median it is
    assert [f.rank for f in findings] == [5]
    assert findings[0].evidence["metric"] == "peak_allocated_bytes"
    assert 1.35 < findings[0].evidence["ratio"] < 1.45
    assert findings[0].title == "rank 5: device memory peak 14.0 GiB, 1.4x the others"


def test_a_rank_that_is_only_lower_is_not_a_finding() -> None:
    # GIVEN rank 0 keeps far less than the others (it got a smaller last shard)
    ranks = {r: steps(10, allocated=(1 if r == 0 else 8) * 1024 * MiB) for r in range(4)}
    # WHEN the ranks are compared
    # THEN nobody is flagged: running out of memory comes from more, not less
    assert detect_rank_imbalance(ranks) == []


def test_all_ranks_growing_alike_is_not_an_imbalance() -> None:
    # GIVEN three ranks that all grow about 2 MiB/step (a leak everywhere: other detectors' job)
    ranks = {r: steps(12, saved=lambda i, r=r: i * (2 * MiB + r * 64 * 1024)) for r in range(3)}
    # WHEN the ranks are compared
    # THEN no single rank stands apart
    assert detect_rank_imbalance(ranks) == []


def test_peaks_are_compared_over_the_steps_every_rank_reached() -> None:
    # GIVEN rank 0 was killed after 5 steps; rank 1 went on, growing only after step 6 as
    # every rank would have (it grows in the last steps by design of the schedule)
    ranks = {
        0: steps(5),
        1: [step(i, saved=0 if i < 6 else (i - 5) * 4 * MiB, rss=None) for i in range(20)],
    }
    # WHEN the ranks are compared
    stats = rank_stats(1, ranks[1], up_to_step=4)
    # THEN rank 1's peak over the common steps equals rank 0's
    assert stats.peak_autograd_saved_bytes == 3 * MiB
    # AND no peak finding comes from the steps rank 0 never reached; the growth is
    # still reported, since it is per step and comparable
    findings = detect_rank_imbalance(ranks)
    assert [f.evidence["metric"] for f in findings] == ["saved_growth_per_step_bytes"]
    assert "peak_autograd_saved_bytes" not in findings[0].evidence["metrics"]


def test_one_rank_alone_or_ranks_without_steps_give_nothing_to_compare() -> None:
    # GIVEN a single rank with a leak, and a second rank that recorded no step
    ranks = {0: steps(12, saved=lambda i: i * MiB), 1: []}
    # WHEN compared
    # THEN there is nothing to compare it with
    assert detect_rank_imbalance(ranks) == []


def test_theil_sen_slope_ignores_a_single_spike() -> None:
    # GIVEN a line of slope 2 with one enormous spike
    points = [(i, 2.0 * i) for i in range(10)]
    points[5] = (5, 1e9)
    # WHEN its slope is estimated
    # THEN the spike does not move it
    xs, ys = zip(*points)
    assert theil_sen(xs, ys) == 2.0
    assert theil_sen([0], [1.0]) == 0.0
