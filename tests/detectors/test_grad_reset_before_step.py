"""grad-reset-before-step: gradients zeroed between backward and optimizer.step()."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import grad_reset_before_step as detector
from tests.detectors.loop_helpers import (
    analysis,
    at,
    event,
    line_of,
    loop_problems,
    of_kind,
    problems,
    step,
)
from tests.helpers import only, run_sample

KIND = "grad-reset-before-step"
SAMPLE = "bugs/grad_reset_before_step.py"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


def test_buggy_sample_names_the_optimizer_at_the_zero_grad_line(tmp_path: Path) -> None:
    # GIVEN loss.backward(); optimizer.zero_grad(); optimizer.step()
    # WHEN it runs under memwatch
    run = run_sample(SAMPLE, "--steps", "6", out=tmp_path / "run.db")
    # THEN an error names `optimizer` at the zero_grad line that must move
    finding = only(run.findings, KIND)
    assert finding.severity == "error"
    assert finding.variable == "optimizer"
    assert at(finding) == ("grad_reset_before_step.py", line_of(SAMPLE, "optimizer.zero_grad()"))
    assert finding.first_step == 0
    assert finding.evidence["grads_none"] == finding.evidence["params_checked"] == 4
    assert "before the forward/backward" in finding.fix


def test_fixed_twin_is_clean(tmp_path: Path) -> None:
    # GIVEN zero_grad before the forward
    run = run_sample(
        "bugs/grad_reset_before_step_fixed.py", "--steps", "6", out=tmp_path / "run.db"
    )
    # THEN nothing at warning level or above
    assert problems(run.findings) == []


def test_module_zero_grad_keeping_zero_tensors_is_caught() -> None:
    # GIVEN model.zero_grad(set_to_none=False) between backward and step: the gradients
    #       are zero tensors, not None, so only the call order tells
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for _ in range(4):
            loss = model(torch.randn(4, 8)).pow(2).mean()
            loss.backward()
            model.zero_grad(set_to_none=False)
            opt.step()
    # THEN the error names `model` and the zero_grad via the module
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "model"
    assert finding.evidence["via"] == "module.zero_grad"
    assert finding.evidence["grads_none"] == 0


def test_zeroing_another_optimizers_gradients_is_silent() -> None:
    # GIVEN two models with their own optimizers; the second one's zero_grad runs between
    #       the first one's backward and step (touching none of its parameters)
    first, second = _model(), _model()
    opt_a = torch.optim.SGD(first.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(second.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for _ in range(4):
            opt_a.zero_grad()
            first(torch.randn(4, 8)).pow(2).mean().backward()
            opt_b.zero_grad()
            opt_a.step()
            second(torch.randn(4, 8)).pow(2).mean().backward()
            opt_b.step()
    # THEN no alarm
    assert loop_problems(mw.findings) == []


def test_lbfgs_closure_zeroing_inside_step_is_silent() -> None:
    # GIVEN LBFGS, whose closure zeroes, runs forward and backward inside step()
    model = _model()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=3)
    x = torch.randn(16, 8)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    with memwatch(store=False) as mw:
        for _ in range(4):
            opt.step(closure)
    # THEN no alarm
    assert loop_problems(mw.findings) == []


def test_gradients_still_reach_the_optimizer_under_the_watch() -> None:
    # GIVEN the correct order, WHEN watched, THEN the update equals the unwatched one
    #       (the zero_grad wrappers change nothing)
    def train(watch: bool) -> torch.Tensor:
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
        if watch:
            with memwatch(store=False):
                for _ in range(3):
                    opt.zero_grad()
                    model(x).pow(2).mean().backward()
                    opt.step()
        else:
            for _ in range(3):
                opt.zero_grad()
                model(x).pow(2).mean().backward()
                opt.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(train(True), train(False))


# -- pure detector, hand-made evidence --------------------------------------------------------
def test_one_reset_is_an_error_naming_the_call_and_the_step() -> None:
    data = analysis(
        [step(i) for i in range(3)],
        [
            event(
                "grad-reset",
                1,
                {
                    "via": "optimizer.zero_grad",
                    "variable": "opt",
                    "optimizer": "AdamW",
                    "params_checked": 8,
                    "grads_none": 8,
                    "step_location": {"file": "train.py", "line": 12, "function": "main"},
                },
            )
        ],
    )
    (finding,) = detector.detect(data)
    assert finding.severity == "error"
    assert finding.title == (
        "`opt.zero_grad()` wipes the gradients between backward and AdamW.step()"
    )
    assert "train.py:12" in finding.detail
    assert finding.first_step == 1


def test_no_event_no_finding() -> None:
    assert detector.detect(analysis([step(i) for i in range(3)], [])) == []


# -- closures: the step that ran the backward consumed it (Lightning's automatic optimization)
def test_zero_grad_after_a_closure_step_is_silent() -> None:
    # GIVEN Lightning's order: optimizer.step(closure) where the closure zeroes, runs the
    #       forward and backward; then, between steps, `model.zero_grad()` (Lightning's
    #       on_validation_model_zero_grad before a validation pass)
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(16, 8)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    with memwatch(store=False) as mw:
        for i in range(6):
            opt.step(closure)
            if i % 2 == 1:
                model.zero_grad()  # after the step: the gradients were already used
    # THEN no alarm: the backward ran inside the step that used its gradients
    assert loop_problems(mw.findings) == []


def test_closure_zeroing_after_its_own_backward_is_caught() -> None:
    # GIVEN a closure in the wrong order: backward, then zero_grad, inside optimizer.step()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 8)

    def closure() -> torch.Tensor:
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.zero_grad()
        return loss

    with memwatch(store=False) as mw:
        for _ in range(4):
            opt.step(closure)
    # THEN the error names the optimizer's zero_grad
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "opt"
    assert finding.evidence["grads_none"] == finding.evidence["params_checked"]
