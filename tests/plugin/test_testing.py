"""``memwatch.testing.assert_no_leaks`` and the sample users copy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from memwatch.errors import MemwatchError
from memwatch.testing import assert_no_leaks

pytest_plugins = ["pytester"]

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "test_training_memory.py"


@pytest.fixture
def training() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.01), torch.randn(32, 64)


def test_a_leaking_step_function_fails_with_the_finding(training: tuple) -> None:
    # GIVEN a step function that sums the loss tensor into a variable outside it
    model, opt, x = training
    total: torch.Tensor | float = 0.0

    def step() -> None:
        nonlocal total
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        total = total + loss

    # WHEN it runs under assert_no_leaks THEN it fails naming the leak and the fix
    with pytest.raises(AssertionError) as failure:
        assert_no_leaks(step, steps=8, warmup=2)
    text = str(failure.value)
    assert text.startswith("memwatch: forbidden finding: graph-accumulation\n")
    assert "variable `total`" in text
    assert f"{Path(__file__).name}:" in text
    assert "fix:" in text


def test_the_fixed_step_function_passes_and_returns_its_watch(training: tuple) -> None:
    model, opt, x = training
    history = {"total": 0.0}

    def step() -> None:
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history["total"] += loss.item()

    watch = assert_no_leaks(step, steps=6, warmup=2)
    # one step per call, each marked after the call even though the optimizer stepped too
    assert [s.boundary for s in watch.steps] == ["manual"] * 6
    assert watch.findings == []


def test_growth_without_a_graph_is_judged_against_the_tolerance() -> None:
    # GIVEN a step function that keeps 8 KiB of plain tensors per call
    kept: list[torch.Tensor] = []

    def step() -> None:
        kept.append(torch.ones(2048))

    # WHEN judged with a tolerance below and above 8 KiB/step THEN only the first fails
    with pytest.raises(AssertionError, match=r"grew \+8\.0 KiB/step .*limit 1\.0 KiB/step"):
        assert_no_leaks(step, steps=6, warmup=1, tolerance="1KiB")
    assert_no_leaks(step, steps=6, warmup=1, tolerance="16KiB")


def test_too_few_steps_for_the_warmup_are_refused() -> None:
    with pytest.raises(MemwatchError, match=r"at least warmup \+ 2 = 5 steps"):
        assert_no_leaks(lambda: None, steps=4, warmup=3)


def test_the_sample_passes_as_users_will_run_it(inner: pytest.Pytester) -> None:
    # GIVEN the sample file, copied as a user would
    inner.makepyfile(test_training_memory=SAMPLE.read_text())
    # WHEN run with pytest THEN every style passes and the demonstrated leak is caught
    result = inner.runpytest_inprocess("-rxX")
    result.assert_outcomes(passed=3, xfailed=1)
