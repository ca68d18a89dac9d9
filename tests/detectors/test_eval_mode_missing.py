"""eval-mode-missing: evaluation runs with dropout / batch-norm still in training mode."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import eval_mode_missing as detector
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

KIND = "eval-mode-missing"
SAMPLE = "bugs/eval_mode_missing.py"


def test_buggy_sample_names_the_model_at_its_call(tmp_path: Path) -> None:
    # GIVEN validation under no_grad but without model.eval() (Dropout + BatchNorm1d)
    # WHEN it runs under memwatch
    run = run_sample(SAMPLE, "--steps", "10", out=tmp_path / "run.db")
    # THEN a warning names `model` where it is called, with the modules still training
    finding = only(run.findings, KIND)
    assert finding.severity == "warning"
    assert finding.variable == "model"
    assert at(finding) == ("eval_mode_missing.py", line_of(SAMPLE, "logits = model("))
    assert "model.eval()" in finding.fix
    assert finding.evidence["training_module_count"] == 2
    assert any("Dropout" in m for m in finding.evidence["training_modules"])


def test_fixed_twin_is_clean(tmp_path: Path) -> None:
    # GIVEN the same validation between model.eval() and model.train()
    run = run_sample("bugs/eval_mode_missing_fixed.py", "--steps", "10", out=tmp_path / "run.db")
    # THEN nothing at warning level or above
    assert problems(run.findings) == []


def test_a_no_grad_teacher_forward_each_training_step_is_not_evaluation() -> None:
    # GIVEN a student trained against a teacher that runs under no_grad in train mode
    #       (one teacher forward per training step, as in self-distillation)
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    teacher = nn.Sequential(nn.Linear(16, 32), nn.Dropout(0.1), nn.Linear(32, 4))
    opt = torch.optim.SGD(student.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(12):
            x = torch.randn(32, 16)
            with torch.no_grad():
                target = teacher(x).softmax(-1)
            loss = nn.functional.cross_entropy(student(x), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
    # THEN no eval-mode warning (a single no-grad forward per step is not an evaluation)
    assert of_kind(mw.findings, KIND) == []
    assert loop_problems(mw.findings) == []


def test_an_evaluation_pass_without_eval_is_reported_in_process() -> None:
    # GIVEN an in-process run whose evaluation pass (no_grad, 3 batches) leaves BatchNorm on
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for i in range(8):
            loss = model(torch.randn(32, 16)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i == 3:
                with torch.no_grad():
                    scores = [model(torch.randn(32, 16)).mean() for _ in range(3)]
                del scores
    # THEN the warning appears, since the step that held the evaluation
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.first_step == 4
    assert finding.evidence["training_modules"] == ["1 (BatchNorm1d)"]


# -- pure detector, hand-made evidence --------------------------------------------------------
def _ev(n: int, forwards: int, backwards: int = 1, how: str = "no_grad") -> object:
    return event(
        "eval-pass-train-mode",
        n,
        {
            "how": how,
            "forwards": forwards,
            "training_modules": ["2 (Dropout)"],
            "training_module_count": 1,
            "step_forwards": forwards + 1,
            "step_backwards": backwards,
            "model": "Net",
            "variable": "net",
        },
    )


def test_several_train_mode_eval_forwards_in_a_step_are_a_warning() -> None:
    data = analysis([step(i) for i in range(6)], [_ev(4, forwards=5)])
    (finding,) = detector.detect(data)
    assert finding.severity == "warning"
    assert finding.variable == "net"
    assert finding.fix == "Call `net.eval()` before evaluating and `net.train()` after."


def test_steps_without_backward_count_as_evaluation() -> None:
    # GIVEN an inference-only script: one forward per step, no backward at all
    events = [_ev(i, forwards=1, backwards=0) for i in range(3)]
    (finding,) = detector.detect(analysis([step(i, backwards=0) for i in range(3)], events))
    assert finding.evidence["forwards"] == 3


def test_one_forward_per_training_step_is_silent() -> None:
    events = [_ev(i, forwards=1, backwards=1) for i in range(10)]
    assert detector.detect(analysis([step(i) for i in range(10)], events)) == []


# -- mixed modes: which layers in train mode are deliberate -----------------------------------
def test_monte_carlo_dropout_with_the_root_in_eval_mode_is_silent() -> None:
    # GIVEN model.eval() and then only the Dropout layers switched back to train, under
    #       no_grad (Monte Carlo dropout: several stochastic forwards per prediction)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Dropout(0.3), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for i in range(1, 9):
            loss = model(torch.randn(32, 16)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i % 4 == 0:
                model.eval()
                model[2].train()
                with torch.no_grad():
                    torch.stack([model(torch.randn(8, 16)) for _ in range(5)])
                model.train()
    # THEN no eval-mode warning: the user called eval(); dropout was re-enabled on purpose
    assert of_kind(mw.findings, KIND) == []


def test_update_bn_recomputing_statistics_in_train_mode_is_silent() -> None:
    # GIVEN SWA's torch.optim.swa_utils.update_bn after training: it calls model.train()
    #       under no_grad on purpose, to recompute the BatchNorm running statistics
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    swa = torch.optim.swa_utils.AveragedModel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = [torch.randn(16, 16) for _ in range(4)]
    with memwatch(store=False) as mw:
        for i in range(1, 13):
            loss = model(torch.randn(32, 16)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i % 4 == 0:
                swa.update_parameters(model)
                torch.optim.swa_utils.update_bn(loader, swa)
    # THEN no eval-mode warning: train mode was set for the no-grad pass itself
    assert of_kind(mw.findings, KIND) == []


def test_train_called_with_grad_on_then_a_no_grad_evaluation_still_warns() -> None:
    # GIVEN model.train() at the top of each epoch (grad on) and an evaluation under no_grad
    #       that forgets model.eval()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Dropout(0.3), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _epoch in range(3):
            model.train()
            for _ in range(4):
                loss = model(torch.randn(32, 16)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                for _ in range(3):
                    model(torch.randn(8, 16))
    # THEN the warning stays
    assert len(of_kind(mw.findings, KIND)) == 1


def test_frozen_batch_norm_then_an_evaluation_without_eval_still_warns() -> None:
    # GIVEN a training model (root in train mode) with BatchNorm frozen in eval, evaluated
    #       under no_grad without model.eval(): dropout is still on
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Dropout(0.3), nn.Linear(32, 4))
    model[1].eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for i in range(1, 9):
            loss = model(torch.randn(32, 16)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i % 4 == 0:
                with torch.no_grad():
                    [model(torch.randn(8, 16)) for _ in range(3)]
    # THEN the warning names the dropout layer only
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.evidence["training_modules"] == ["2 (Dropout)"]


def test_evidence_with_the_root_in_eval_mode_is_not_a_finding() -> None:
    events = [
        event(
            "eval-pass-train-mode",
            4,
            {"how": "no_grad", "forwards": 5, "model_training": False, "eval_module_count": 1},
        )
    ]
    assert detector.detect(analysis([step(i) for i in range(6)], events)) == []
