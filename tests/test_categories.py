"""Memory by category per step: parameters, gradients, optimizer state, activations, rest."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import torch

from memwatch import memwatch
from memwatch.collect.categories import count_categories
from memwatch.report import render
from memwatch.store import RunReader


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int = 5) -> None:
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(16, 32)).pow(2).mean().backward()
        opt.step()


def _param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_adam_run_splits_parameters_gradients_and_optimizer_state(tmp_path: Path) -> None:
    # GIVEN an MLP trained with Adam on CPU (no allocator total)
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with memwatch(tmp_path / "run.db") as mw:
        _train(model, opt)
    # THEN every counted step (all but the warm-up's calibration step) has categories:
    #      parameters and gradients the size of the model, optimizer state two moments per
    #      parameter plus Adam's step counters, the activations as the saved-for-backward
    #      peak, and the rest unknown ("estimated")
    params = _param_bytes(model)
    with RunReader(tmp_path / "run.db") as reader:
        steps = reader.categories()
    counted = [s.step for s in mw.steps if s.saved_measured]
    assert [c.step for c in steps] == counted and len(counted) == len(mw.steps) - 1 == 4
    last = steps[-1]
    assert last.parameters_bytes == params
    assert last.gradients_bytes == params
    n_params = len(list(model.parameters()))
    step_counter = opt.state[next(iter(model.parameters()))]["step"]
    assert last.optimizer_bytes == 2 * params + n_params * step_counter.element_size()
    assert last.activations_bytes == mw.steps[-1].saved_peak_bytes > 0
    assert (last.basis, last.total_bytes, last.other_bytes) == ("estimated", None, None)


def test_tracked_tensors_give_a_total_and_the_rest(tmp_path: Path) -> None:
    # GIVEN track_tensors=True (a CPU total exists)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with memwatch(store=False, track_tensors=True) as mw:
        _train(model, opt)
    # THEN the rest is the tracked peak minus the counted categories, never negative
    last = mw.categories[-1]
    assert last.basis == "tracked-tensors"
    assert last.total_bytes == mw.steps[-1].peak_allocated_bytes
    assert last.other_bytes is not None and last.other_bytes >= 0


def test_shared_storage_is_counted_once() -> None:
    # GIVEN tied weights (one parameter in two modules) and a second optimizer over the same
    #       parameters
    a = torch.nn.Linear(8, 8, bias=False)
    b = torch.nn.Linear(8, 8, bias=False)
    b.weight = a.weight
    opts = [torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)]
    # WHEN counted
    counts = count_categories([a, b], opts, None)
    # THEN the one 8x8 float weight counts once
    assert counts.parameters == 8 * 8 * 4
    assert counts.gradients == counts.optimizer == 0


def test_reports_show_the_breakdown_at_the_peak(tmp_path: Path) -> None:
    # GIVEN a recorded run
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with memwatch(tmp_path / "run.db") as mw:
        _train(model, opt)
    # THEN the text report lists the categories and the JSON report adds a categories
    #      object beside the memwatch.report/1 keys
    text = mw.report()
    assert "by category at step" in text and "optimizer" in text and "estimated" in text
    data = json.loads(mw.report("json"))
    assert data["schema"] == "memwatch.report/1"
    assert data["categories"]["at_peak"]["parameters_bytes"] == _param_bytes(model)
    assert data["categories"]["basis"] == "estimated"
    # AND a run without categories renders as before (no key, no block)
    plain = json.loads(render("json", mw.info, mw.steps, mw.findings))
    assert "categories" not in plain


def test_a_file_without_the_categories_table_reads_as_none(tmp_path: Path) -> None:
    # GIVEN a run file written before schema 1.1 (no categories table)
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(tmp_path / "old.db"):
        _train(model, opt, steps=2)
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("DROP TABLE categories")
    # THEN the reader gives no categories and everything else as before
    with RunReader(tmp_path / "old.db") as reader:
        assert reader.categories() == []
        assert len(reader.steps()) == 2


def test_a_model_rebuilt_more_often_than_the_limit_is_still_the_one_counted(
    tmp_path: Path,
) -> None:
    # GIVEN a loop that builds a new, wider model and optimizer for each of more rounds than
    #       the probe remembers models (k-fold, a sweep), dropping the previous ones
    from memwatch.collect import categories

    rounds = categories.MAX_MODULES + 3
    with memwatch(tmp_path / "run.db", analysis="deep") as mw:
        for width in range(1, rounds + 1):
            model = torch.nn.Linear(32, 8 * width)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            _train(model, opt, steps=2)
        _train(model, opt, steps=categories.REFRESH_EVERY)  # the cached counts are renewed
        last_step = mw.steps[-1].step
    del model, opt
    # THEN the last round's categories are those of the last model: the dead ones made room
    with RunReader(tmp_path / "run.db") as reader:
        last = [c for c in reader.categories() if c.step == last_step]
    assert last and last[0].parameters_bytes == (32 * 8 * rounds + 8 * rounds) * 4
