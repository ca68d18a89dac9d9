"""train-mode-smell: training state that does not fit the phase (modules trained in eval
mode, autograd debugging switches left on), each with the line that set it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import train_mode_smell as detector
from memwatch.records import Finding
from tests.detectors.loop_helpers import analysis, event, of_kind, problems, step

KIND = "train-mode-smell"


def _net(batch_norm: bool = True, dropout: bool = True) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(16, 32)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(32))
    layers.append(nn.ReLU())
    if dropout:
        layers.append(nn.Dropout(0.2))
    layers.append(nn.Linear(32, 4))
    return nn.Sequential(*layers)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    loss = model(torch.randn(16, 16)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def _evaluate(model: nn.Module) -> float:
    model.eval()  # the line a finding must point at
    with torch.no_grad():
        return float(sum(model(torch.randn(16, 16)).sum() for _ in range(2)))


EVAL_LINE = (
    inspect.getsource(_evaluate)
    .splitlines()
    .index("    model.eval()  # the line a finding must point at")
    + (inspect.getsourcelines(_evaluate)[1])
)


def _watched(loop: Callable[[], Any]) -> list[Finding]:
    torch.manual_seed(0)
    with memwatch(store=False) as mw:
        loop()
    return mw.findings


@contextmanager
def _anomaly_restored() -> Iterator[None]:
    before = torch.is_anomaly_enabled()
    try:
        yield
    finally:
        torch.autograd.set_detect_anomaly(before)


# -- modules trained in eval mode: several shapes of the bug ---------------------------------
def test_a_hand_loop_that_validates_every_k_steps_and_never_calls_train_is_named() -> None:
    # GIVEN a hand-written loop validating every 5 steps through a helper that calls
    #       model.eval(), with no model.train() afterwards
    def loop() -> None:
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for i in range(1, 21):
            _train_step(model, opt)
            if i % 5 == 0:
                _evaluate(model)

    # WHEN it runs under memwatch
    findings = _watched(loop)
    # THEN one warning names `model`, points at the eval() line and lists the layers
    (finding,) = of_kind(findings, KIND)
    assert finding.severity == "warning"
    assert finding.variable == "model"
    assert finding.location is not None and finding.location.line == EVAL_LINE
    assert finding.evidence["steps"] == 15  # steps 6..20
    assert finding.evidence["eval_module_count"] == 2
    assert "model.train()" in finding.fix
    assert "eval()" in finding.detail


class _Trainer:
    """A Trainer class whose validate() leaves the model in eval mode."""

    def __init__(self) -> None:
        self.model = _net(batch_norm=True, dropout=False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def train_epoch(self) -> None:
        for _ in range(6):  # BUG: no self.model.train() here
            _train_step(self.model, self.optimizer)

    def validate(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.model(torch.randn(16, 16))

    def fit(self) -> None:
        for _ in range(3):
            self.train_epoch()
            self.validate()


def test_a_trainer_class_whose_validate_leaves_eval_mode_is_named() -> None:
    # GIVEN a Trainer class (BatchNorm only) whose epochs after the first train in eval mode
    findings = _watched(lambda: _Trainer().fit())
    # THEN the warning names `self.model`, set by validate()
    (finding,) = of_kind(findings, KIND)
    assert finding.variable == "self.model"
    assert finding.location is not None and finding.location.function == "validate"
    assert finding.evidence["steps"] == 12
    assert "BatchNorm1d" in finding.title


def test_a_callback_that_sets_eval_is_named_and_a_parent_eval_is_found() -> None:
    # GIVEN a wrapper module whose encoder is called on its own, and an evaluation callback
    #       that calls wrapper.eval() every 4 steps (a callback list, framework style)
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = _net()

    def loop() -> None:
        wrapper = Wrapper()
        opt = torch.optim.SGD(wrapper.parameters(), lr=0.01)
        callbacks = [lambda: wrapper.eval()]
        for i in range(1, 17):
            _train_step(wrapper.encoder, opt)
            if i % 4 == 0:
                for callback in callbacks:
                    callback()

    findings = _watched(loop)
    # THEN the finding points at the callback's wrapper.eval() (the parent's call)
    (finding,) = of_kind(findings, KIND)
    assert finding.variable == "wrapper"
    assert finding.evidence["set_how"] == "eval()"
    assert finding.evidence["set_before_watch"] is False


def test_a_model_already_in_eval_mode_when_the_watch_starts_says_so() -> None:
    # GIVEN a model put in eval mode before the watch started, then trained
    torch.manual_seed(0)
    model = _net()
    model.eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(6):
            _train_step(model, opt)
    # THEN the warning says no eval() call was seen while watching
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.evidence["set_before_watch"] is True
    assert "already in eval mode when the watch started" in finding.detail


# -- healthy look-alikes ----------------------------------------------------------------------
def _frozen_batch_norm() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for i in range(12):
        model.train()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.eval()  # deliberate: frozen statistics while fine-tuning
        _train_step(model, opt)
        if i % 4 == 3:
            _evaluate(model)


def _frozen_backbone(requires_grad: bool) -> Callable[[], None]:
    def loop() -> None:
        backbone, head = _net(), nn.Linear(4, 2)
        backbone.eval()
        for p in backbone.parameters():
            p.requires_grad_(requires_grad)
        opt = torch.optim.SGD(head.parameters(), lr=0.01)  # the backbone is in no optimizer
        for _ in range(10):
            loss = head(backbone(torch.randn(16, 16))).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    return loop


def _validation_then_train() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for i in range(1, 16):
        _train_step(model, opt)
        if i % 5 == 0:
            _evaluate(model)
            model.train()


def _eval_without_no_grad_then_train() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for i in range(1, 16):
        _train_step(model, opt)
        if i % 5 == 0:
            model.eval()
            scores = [model(torch.randn(16, 16)).sum().item() for _ in range(2)]
            model.train()
            del scores


def _no_mode_dependent_layers() -> None:
    model = _net(batch_norm=False, dropout=False)
    model.eval()  # makes no difference to this model
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(10):
        _train_step(model, opt)


def _mc_dropout() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for i in range(1, 13):
        _train_step(model, opt)
        if i % 4 == 0:
            model.eval()
            for m in model.modules():
                if isinstance(m, nn.Dropout):
                    m.train()
            with torch.no_grad():
                torch.stack([model(torch.randn(8, 16)) for _ in range(5)])
            model.train()


@pytest.mark.parametrize(
    "loop",
    [
        _frozen_batch_norm,
        _frozen_backbone(requires_grad=False),
        _frozen_backbone(requires_grad=True),
        _validation_then_train,
        _eval_without_no_grad_then_train,
        _no_mode_dependent_layers,
        _mc_dropout,
    ],
    ids=[
        "frozen-batch-norm",
        "frozen-backbone-no-grad",
        "backbone-not-in-optimizer",
        "validation-then-train",
        "eval-with-grad-then-train",
        "no-mode-dependent-layers",
        "mc-dropout",
    ],
)
def test_healthy_mode_changes_are_silent(loop: Callable[[], None]) -> None:
    # GIVEN a correct program that switches modes (or looks like it should)
    findings = _watched(loop)
    # THEN no train-mode-smell, and no eval-mode-missing either
    assert of_kind(findings, KIND) == []
    assert [p for p in problems(findings) if p.startswith("eval-mode-missing")] == []


# -- debugging switches -----------------------------------------------------------------------
def test_anomaly_detection_turned_on_in_the_script_is_named_at_its_line() -> None:
    # GIVEN a script that turns anomaly detection on (a helper's leftover) and trains
    def loop() -> None:
        torch.autograd.set_detect_anomaly(True)  # the leftover
        model = _net(batch_norm=False, dropout=False)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(6):
            _train_step(model, opt)

    with _anomaly_restored():
        findings = _watched(loop)
    # THEN a warning points at the set_detect_anomaly line
    (finding,) = of_kind(findings, KIND)
    assert finding.severity == "warning"
    assert finding.variable == "torch.autograd.set_detect_anomaly"
    assert finding.evidence["steps_on"] == 6
    assert "Anomaly detection" in finding.title
    assert finding.location is not None and finding.location.function == "loop"


def test_a_detect_anomaly_block_around_the_whole_loop_is_named() -> None:
    def loop() -> None:
        model = _net(batch_norm=False, dropout=False)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        with torch.autograd.detect_anomaly():
            for _ in range(5):
                _train_step(model, opt)
        for _ in range(3):
            _train_step(model, opt)

    with _anomaly_restored(), pytest.warns(UserWarning):  # torch warns that it is slow
        findings = _watched(loop)
    (finding,) = of_kind(findings, KIND)
    assert finding.variable == "torch.autograd.detect_anomaly"
    assert finding.evidence["steps_on"] == 5
    assert finding.evidence["steps_seen"] == 8


def test_anomaly_detection_on_before_the_watch_says_so() -> None:
    torch.manual_seed(0)
    model = _net(batch_norm=False, dropout=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with _anomaly_restored():
        torch.autograd.set_detect_anomaly(True)
        with memwatch(store=False) as mw:
            for _ in range(4):
                _train_step(model, opt)
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.evidence["set_before_watch"] is True
    assert "already on when the watch started" in finding.detail


def test_anomaly_detection_for_one_debugging_step_is_silent() -> None:
    def loop() -> None:
        model = _net(batch_norm=False, dropout=False)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for i in range(8):
            if i == 2:
                with torch.autograd.detect_anomaly():
                    _train_step(model, opt)
            else:
                _train_step(model, opt)

    with _anomaly_restored(), pytest.warns(UserWarning):
        findings = _watched(loop)
    assert of_kind(findings, KIND) == []


def test_a_profiler_over_a_few_steps_is_silent() -> None:
    # GIVEN torch.profiler with a schedule recording 3 of 12 steps (the documented way)
    def loop() -> None:
        model = _net(batch_norm=False, dropout=False)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        schedule = torch.profiler.schedule(wait=2, warmup=1, active=3, repeat=1)
        with torch.profiler.profile(schedule=schedule) as prof:
            for _ in range(12):
                _train_step(model, opt)
                prof.step()

    assert of_kind(_watched(loop), KIND) == []


# -- pure detector, hand-made evidence --------------------------------------------------------
def _eval_step(n: int, **data: Any) -> Any:
    base = {
        "model": "Net",
        "variable": "net",
        "eval_modules": ["2 (Dropout)"],
        "eval_module_count": 1,
        "stochastic_count": 1,
        "stepped_params": 4,
        "steps": n,
        "set_how": "eval()",
        "set_step": 0,
    }
    return event("train-step-eval-mode", n, {**base, **data})


def test_two_steps_in_eval_mode_are_not_yet_a_finding() -> None:
    data = analysis([step(i) for i in range(4)], [_eval_step(1), _eval_step(2)])
    assert detector.detect(data) == []


def test_three_steps_in_eval_mode_are_a_warning_with_the_fix() -> None:
    data = analysis([step(i) for i in range(5)], [_eval_step(i) for i in (1, 2, 3)])
    (finding,) = detector.detect(data)
    assert finding.severity == "warning"
    assert finding.fix.startswith("Call `net.train()`")
    assert "`net.eval()` at train.py:10 in main during step 0" in finding.detail


def test_a_profiler_on_for_the_whole_run_is_a_warning() -> None:
    def flag(n: int) -> Any:
        return event(
            "global-flag-on",
            n,
            {
                "flag": "autograd-profiler",
                "steps_on": n,
                "steps_seen": n,
                "consecutive": n,
                "set_call": "torch.autograd.profiler.profile",
            },
        )

    short = analysis([step(i) for i in range(10)], [flag(10)])
    assert detector.detect(short) == []
    long = analysis([step(i) for i in range(60)], [flag(10), flag(60)])
    (finding,) = detector.detect(long)
    assert "profiler" in finding.title
    assert finding.evidence["longest_run"] == 60


def test_an_lstm_with_its_own_dropout_trained_in_eval_mode_is_named() -> None:
    # GIVEN a language model whose only mode-dependent layer is nn.LSTM(dropout=0.3),
    #       left in eval mode by an evaluation helper at the end of each epoch
    class LanguageModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(8, 16, num_layers=2, dropout=0.3, batch_first=True)
            self.head = nn.Linear(16, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0])

    def evaluate(lm: nn.Module) -> None:
        lm.eval()
        with torch.no_grad():
            lm(torch.randn(4, 5, 8))

    def loop() -> None:
        lm = LanguageModel()
        opt = torch.optim.SGD(lm.parameters(), lr=0.01)
        for _ in range(3):
            for _ in range(4):
                loss = lm(torch.randn(4, 5, 8)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            evaluate(lm)

    (finding,) = of_kind(_watched(loop), KIND)
    # THEN the LSTM is named as the affected layer, and evaluate()'s lm.eval() as the line
    assert finding.variable == "lm"
    assert finding.evidence["eval_modules"] == ["rnn (LSTM)"]
    assert finding.location is not None and finding.location.function == "evaluate"


@pytest.mark.parametrize("planted", [False, True], ids=["clean", "planted"])
def test_lightning_switching_modes_around_validation(planted: bool) -> None:
    # GIVEN a LightningModule with Dropout and BatchNorm (its stem's BN frozen in eval at
    #       each epoch start), validated every 4 batches: Lightning sets eval() for the
    #       validation and restores the training modes after it; the planted bug puts the
    #       whole model in eval mode at the end of each validation
    L = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32))
            self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.stem(x))

        def on_train_epoch_start(self) -> None:
            self.stem[1].eval()  # deliberate: frozen batch-norm statistics

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return nn.functional.mse_loss(self(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val", nn.functional.mse_loss(self(x), y))

        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            if planted and batch_idx > 4:
                self.eval()  # the planted bug: training resumes in eval mode

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 16), torch.randn(64, 1))
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=4,
        limit_val_batches=2,
    )
    with memwatch(store=False) as mw:
        trainer.fit(Module(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    # THEN the clean run raises no train-mode-smell (nor eval-mode-missing); the planted
    #      eval() is named at its line
    assert of_kind(mw.findings, "eval-mode-missing") == []
    if not planted:
        assert of_kind(mw.findings, KIND) == []
        return
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "self"
    assert finding.location is not None
    assert finding.location.function == "on_train_batch_start"
