"""host-memory-growth: process RSS grows steadily across steps (pure rule on rss_bytes)."""

from __future__ import annotations

import math
import random
from pathlib import Path

from memwatch.analysis import AnalysisInput, analyze
from memwatch.analysis.detectors import host_memory_growth as detector
from memwatch.evidence import GraphAccumulation
from memwatch.records import Location
from tests.detectors.loop_helpers import MiB, analysis, of_kind, problems, step
from tests.helpers import only, run_sample

KIND = "host-memory-growth"
BASE = 400 * MiB


def _steps(rss: list[float], **kw: int) -> list:
    return [step(i, rss=int(r), **kw) for i, r in enumerate(rss)]


def test_buggy_sample_growth_is_attributed_to_the_dataset_cache_by_the_census(
    tmp_path: Path,
) -> None:
    # GIVEN a Dataset that caches every decoded sample (numpy arrays, ~3 MiB more per step)
    # WHEN it runs under memwatch
    run = run_sample("bugs/host_memory_growth.py", "--steps", "32", out=tmp_path / "run.db")
    # THEN the census names the holder and the line that stores into it (host arrays)
    growth = only(run.findings, "memory-growth")
    assert growth.variable == "dataset.cache"
    assert growth.location is not None and growth.location.function == "__getitem__"
    assert "host arrays (numpy)" in growth.detail
    assert growth.growth_per_step_bytes and growth.growth_per_step_bytes > 2 * MiB
    # AND the location-less RSS warning is withdrawn: the named holder explains it
    assert [f for f in run.findings if f.kind == KIND and f.severity != "info"] == []


def test_fixed_twin_is_clean(tmp_path: Path) -> None:
    # GIVEN the same loader decoding on demand
    run = run_sample("bugs/host_memory_growth_fixed.py", "--steps", "32", out=tmp_path / "run.db")
    # THEN nothing at warning level or above
    assert problems(run.findings) == []


def test_steady_growth_under_noise_fires_with_the_robust_slope() -> None:
    # GIVEN +2 MiB a step with ±6 MiB of allocator noise over 200 steps
    rng = random.Random(0)
    rss = [BASE + i * 2 * MiB + rng.uniform(-6, 6) * MiB for i in range(200)]
    (finding,) = detector.detect(analysis(_steps(rss)))
    # THEN the slope is close to 2 MiB/step despite the noise
    assert finding.growth_per_step_bytes is not None
    assert abs(finding.growth_per_step_bytes - 2 * MiB) < 0.2 * MiB
    assert finding.first_step == 20  # warm-up: a tenth of the run


def test_rss_swinging_with_the_allocator_is_silent() -> None:
    # GIVEN RSS rising and falling by 200 MiB (heap grows, trims) with no trend
    rss = [BASE + 200 * MiB * (0.5 + 0.5 * math.sin(i / 5)) for i in range(300)]
    assert detector.detect(analysis(_steps(rss))) == []


def test_sawtooth_that_is_trimmed_back_is_silent() -> None:
    # GIVEN RSS climbing 4 MiB a step for 25 steps, then trimmed back, again and again
    rss = [BASE + (i % 25) * 4 * MiB for i in range(300)]
    assert detector.detect(analysis(_steps(rss))) == []


def test_one_jump_then_flat_is_silent() -> None:
    # GIVEN a 300 MiB buffer allocated once at step 100 (an evaluation cache), then flat
    rss = [BASE + (300 * MiB if i >= 100 else 0) for i in range(200)]
    assert detector.detect(analysis(_steps(rss))) == []


def test_growth_only_during_warm_up_is_silent() -> None:
    # GIVEN RSS rising during the first steps (caches, allocator) then flat
    rss = [BASE + min(i, 15) * 20 * MiB for i in range(150)]
    assert detector.detect(analysis(_steps(rss))) == []


def test_small_growth_is_silent() -> None:
    # GIVEN +100 KiB a step over 200 steps (20 MiB in all: below the absolute minimum)
    rss = [BASE + i * 100 * 1024 for i in range(200)]
    assert detector.detect(analysis(_steps(rss))) == []


def test_on_cpu_growing_activations_explain_the_growth() -> None:
    # GIVEN a CPU run whose episodes get longer: saved-for-backward peaks grow with RSS
    steps = [step(i, rss=BASE + i * 2 * MiB, saved_peak=i * 2 * MiB) for i in range(100)]
    # THEN on CPU (tensors live in host memory) it is not a host leak ...
    assert detector.detect(analysis(steps, device_type="cpu")) == []
    # ... while on CUDA, where activations are device memory, the same RSS curve is one
    assert len(of_kind(detector.detect(analysis(steps, device_type="cuda")), KIND)) == 1


def test_the_closing_partial_step_is_ignored() -> None:
    # GIVEN a flat run whose last, partial "end" step has a high RSS (teardown)
    steps = [*_steps([BASE] * 60), step(60, rss=BASE + 500 * MiB, boundary="end")]
    assert detector.detect(analysis(steps)) == []


def test_too_few_steps_are_not_judged() -> None:
    rss = [BASE + i * 50 * MiB for i in range(12)]
    assert detector.detect(analysis(_steps(rss))) == []


def test_a_located_leak_is_reported_once_not_also_as_host_growth() -> None:
    # GIVEN RSS climbing 2 MiB a step (the leaked graphs' nodes live on the host) while a
    # proven graph-accumulation names `total` at train.py:12 from step 3
    steps = _steps([BASE + i * 2 * MiB for i in range(100)])
    leak = GraphAccumulation(
        variable="total",
        holder="total",
        hit_streak=2,
        nodes_per_step=8,
        node_bytes_estimate=700,
        first_step=3,
    )
    events = [leak.event(s, Location("train.py", 12, "main"), at=0.0) for s in (4, 50, 98)]
    # WHEN every detector judges the run
    found = analyze(AnalysisInput(steps=steps, events=events, final=True))
    # THEN the leak is reported once, at its line, carrying the RSS growth it explains;
    #      no location-less host-memory-growth blames "a Dataset cache"
    assert [f.kind for f in found] == ["graph-accumulation"]
    (explained,) = found[0].evidence["explains"]
    assert explained["kind"] == KIND
    assert abs(explained["growth_per_step_bytes"] - 2 * MiB) < 0.1 * MiB


def test_host_growth_that_began_before_any_located_leak_started_stays() -> None:
    # GIVEN RSS growth over steps 0-99 and a located leak that only starts at step 500
    steps = _steps([BASE + i * 2 * MiB for i in range(100)])
    leak = GraphAccumulation(
        variable="total", hit_streak=2, nodes_per_step=8, node_bytes_estimate=700, first_step=500
    )
    events = [leak.event(500, Location("train.py", 12, "main"), at=0.0)]
    # THEN both are reported: the leak cannot explain growth measured before it began
    found = analyze(AnalysisInput(steps=steps, events=events, final=True))
    assert sorted(f.kind for f in found) == ["graph-accumulation", KIND]
