"""``memwatch.find_batch_size``: the exact largest batch, few trials, nothing left held."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import _len_torch_dispatch_stack

import memwatch
from memwatch import memwatch as watch
from memwatch.batch_size import Trial
from memwatch.collect.budget import install_budget
from memwatch.collect.gauge import run_trial
from memwatch.errors import MemwatchError
from tests.helpers import kinds, run_sample

MiB = 1024 * 1024


def make_step() -> Callable[[int], None]:
    """A sample model's training step that keeps nothing between calls."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(batch: int) -> None:
        try:
            x, y = torch.randn(batch, 256), torch.randint(0, 10, (batch,))
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        finally:
            opt.zero_grad(set_to_none=True)

    return step


def exhaustive(step: Callable[[int], None], tensors: object, sizes: range, limit: int) -> int:
    """The largest size whose trial raised no OOM and peaked within ``limit``, by trying all."""
    best = 0
    for size in sizes:
        tensors.reset_watermark()  # type: ignore[attr-defined]
        if run_trial(step, size) and tensors.watermark <= limit:  # type: ignore[attr-defined]
            best = size
    return best


def halving_then_bisection_trials(fits: Callable[[int], bool], start: int) -> int:
    """Trials the usual search needs for the exact answer: halve until a fit, then bisect."""
    trials, hi, lo = 1, start, start
    while not fits(lo):
        hi, lo = lo, lo // 2
        trials += 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trials += 1
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return trials


@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_finds_the_exhaustive_answer_in_fewer_trials_and_releases_everything(
    margin: float,
) -> None:
    # GIVEN a sample model under a 1.5 MiB budget
    with watch(budget="1.5MiB", store=False) as mw:
        tensors = mw._budget.tensors
        step = make_step()
        baseline = tensors.live
        # WHEN the largest batch is searched from 512
        result = memwatch.find_batch_size(step, 512, safety_margin=margin)
        # THEN memory is back exactly where it was
        assert tensors.live == baseline
        assert result.held_after_bytes == 0
    # AND the answer is the one trying every size gives (same budget, bare tracking)
    limit = int(1.5 * MiB * (1 - margin))
    budget = install_budget(int(1.5 * MiB))
    try:
        best = exhaustive(make_step(), budget.tensors, range(1, 161), limit)
    finally:
        budget.uninstall()
    assert result.batch_size == best
    assert 64 < best < 160
    # AND it took fewer trials than halving from 512 and bisecting to the exact size
    assert len(result.trials) < halving_then_bisection_trials(lambda s: s <= best, 512)
    # AND what it tried is reported: sizes, fits, peaks (OOMs are lower bounds)
    assert result.trials[0] == Trial(512, False, result.trials[0].peak_bytes)
    assert 512 in result.ooms
    for size, fitted, peak in result.trials:
        assert fitted == (size <= best)
        assert peak is not None
        if fitted:
            assert peak <= limit
    assert result.limit_bytes == limit and result.capacity_bytes == int(1.5 * MiB)


def test_the_result_reads_as_a_table() -> None:
    # GIVEN a search result
    with watch(budget="2MiB", store=False):
        result = memwatch.find_batch_size(make_step(), 512)
    text = str(result)
    # THEN it names the answer, the margin, every trial and the measured slope
    assert text.splitlines()[0].startswith(
        f"find_batch_size: the largest batch that fits is {result.batch_size}"
    )
    assert "10% margin" in text
    assert "OOM" in text and "fits" in text
    assert len([line for line in text.splitlines() if line.strip()[:1].isdigit()]) == len(
        result.trials
    )
    assert "per sample" in text


def test_without_a_watch_budget_installs_tracking_for_the_search_only() -> None:
    # GIVEN no watch, WHEN searching with budget=
    depth = _len_torch_dispatch_stack()
    result = memwatch.find_batch_size(make_step(), 512, budget="2MiB", safety_margin=0.0)
    # THEN it finds a size, and the dispatch mode it used is gone afterwards
    assert result.batch_size is not None and result.ooms
    assert _len_torch_dispatch_stack() == depth


def test_without_any_capacity_the_start_is_only_verified() -> None:
    # GIVEN a CPU without a budget (nothing ever runs out), WHEN searching
    result = memwatch.find_batch_size(make_step(), 64)
    # THEN the start is verified once, never grown past
    assert result.batch_size == 64
    assert [t.batch_size for t in result.trials] == [64]
    assert result.limit_bytes is None


def test_min_size_that_does_not_fit_gives_none() -> None:
    # GIVEN a budget smaller than the model's weights and gradients
    result = memwatch.find_batch_size(make_step(), 64, min_size=16, budget="256KiB")
    # THEN no size fits, and the sizes tried never went below min_size
    assert result.batch_size is None
    assert min(t.batch_size for t in result.trials) == 16
    assert str(result).startswith("find_batch_size: no batch size fits")


def test_budget_applies_to_a_tracking_watch_for_the_search_only() -> None:
    # GIVEN a watch that tracks tensors without a limit
    with watch(track_tensors=True, store=False) as mw:
        tensors = mw._budget.tensors
        # WHEN the search runs with budget=
        result = memwatch.find_batch_size(make_step(), 512, budget="1.5MiB")
        # THEN the search hit the limit, and the watch is unlimited again afterwards
        assert result.ooms and result.capacity_bytes == int(1.5 * MiB)
        assert tensors.budget_bytes is None
        big = torch.empty(4 * MiB // 4)
        assert tensors.live >= 4 * MiB
        del big


def test_a_watch_budget_cannot_be_overridden() -> None:
    # GIVEN a watch with a budget, WHEN another budget is passed, THEN it is refused
    with watch(budget="2MiB", store=False), pytest.raises(MemwatchError, match="own budget"):
        memwatch.find_batch_size(make_step(), 64, budget="4MiB")


def test_the_sample_finds_a_size_and_leaves_no_retry_loop(tmp_path: Path) -> None:
    # GIVEN the sample under the budget its docstring names
    run = run_sample("oom/find_batch_size.py", out=tmp_path / "r.db", extra=("--budget", "16MiB"))
    # THEN it hit OOMs but released the failed trials: no oom-retry-loop
    assert sum(s.oom_events for s in run.steps) >= 1
    assert "oom-retry-loop" not in kinds(run.findings)
