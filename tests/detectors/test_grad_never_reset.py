"""grad-never-reset: an optimizer's gradients are not reset between its steps."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import grad_never_reset as detector
from memwatch.records import Event
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

KIND = "grad-never-reset"
SAMPLE = "bugs/grad_never_reset.py"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


def _batches(n: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 8, generator=g) for _ in range(n)]


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).pow(2).mean()


# -- shapes of the bug -------------------------------------------------------------------------
def test_a_loop_without_zero_grad_is_named_at_its_step() -> None:
    # GIVEN a hand loop that never zeroes: backward, step (the optimizer built under watch)
    model = _model()
    with memwatch(store=False) as mw:
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for x in _batches(8):
            _loss(model, x).backward()
            opt.step()
    # THEN a warning names `opt` at its step line, with the passes summed
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.severity == "warning"
    assert finding.variable == "opt"
    assert finding.title.startswith("Nothing resets the gradients of `opt` (SGD)")
    assert finding.evidence["carried_steps"] == 7
    assert finding.evidence["passes_in_sum"] == finding.evidence["carried_steps"] + 1
    assert "passes where one step's were meant" in finding.detail


def test_trainer_step_with_clipping_and_no_zero_grad_is_caught() -> None:
    # GIVEN a Trainer class whose train_step clips and steps, never zeroing
    class Trainer:
        def __init__(self) -> None:
            self.model = _model()
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)

        def train_step(self, x: torch.Tensor) -> None:
            _loss(self.model, x).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()

    trainer = Trainer()
    with memwatch(store=False) as mw:
        for x in _batches(8):
            trainer.train_step(x)
    # THEN the warning names `self.optimizer` in train_step
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "self.optimizer"
    assert finding.location is not None and finding.location.function == "train_step"


def test_zero_grad_once_per_epoch_is_named_at_its_line() -> None:
    # GIVEN model.zero_grad() before each epoch's batch loop, not each batch
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with memwatch(store=False) as mw:
        for _ in range(3):
            model.zero_grad()
            for x in _batches(6):
                _loss(model, x).backward()
                opt.step()
    # THEN the warning points at the zero_grad and says how often it resets
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.evidence["reset_call"] == "model.zero_grad()"
    assert "only once every 6 steps" in finding.title
    assert finding.location is not None
    assert finding.location.line == finding.evidence["reset_location"]["line"]


def test_grad_scaler_loop_without_zero_grad_is_caught() -> None:
    # GIVEN scaled backward, scaler.step, scaler.update and no zero_grad
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    with memwatch(store=False) as mw:
        for x in _batches(8):
            scaler.scale(_loss(model, x)).backward()
            scaler.step(opt)
            scaler.update()
    # THEN the warning names `opt`
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "opt"


def test_closure_without_zero_grad_is_caught() -> None:
    # GIVEN optimizer.step(closure) whose closure runs forward and backward, never zeroing
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(16, 8)

    def closure() -> torch.Tensor:
        loss = _loss(model, x)
        loss.backward()
        return loss

    with memwatch(store=False) as mw:
        for _ in range(6):
            opt.step(closure)
    # THEN the warning names `opt`
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "opt"


def test_gan_names_only_the_optimizer_left_unreset() -> None:
    # GIVEN a GAN: the discriminator's optimizer zeroes every step, the generator's never
    torch.manual_seed(0)
    gen, disc = nn.Linear(4, 8), nn.Linear(8, 1)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    with memwatch(store=False) as mw:
        for x in _batches(8):
            fake = gen(torch.randn(4, 4))
            opt_d.zero_grad()
            (disc(x).mean() - disc(fake.detach()).mean()).backward()
            opt_d.step()
            disc(fake).mean().backward()
            opt_g.step()
    # THEN one warning, on `opt_g`
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "opt_g"


# -- healthy look-alikes -----------------------------------------------------------------------
def test_deliberate_accumulation_is_silent() -> None:
    # GIVEN k=4 accumulation: backward every batch, step and zero_grad every 4th
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for i, x in enumerate(_batches(16)):
            (_loss(model, x) / 4).backward()
            if (i + 1) % 4 == 0:
                opt.step()
                opt.zero_grad(set_to_none=False)
    # THEN no alarm
    assert loop_problems(mw.findings) == []


def test_gradients_reset_by_hand_are_silent() -> None:
    # GIVEN resets by hand after each step: `p.grad = None` loops, or new `p.grad` tensors
    for by_none in (True, False):
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with memwatch(store=False) as mw:
            for x in _batches(8):
                _loss(model, x).backward()
                opt.step()
                for p in model.parameters():
                    p.grad = None if by_none else torch.zeros_like(p)
        # THEN no alarm
        assert loop_problems(mw.findings) == [], by_none


def test_gradients_set_by_hand_each_step_are_silent() -> None:
    # GIVEN an optimizer fed hand-made gradients (no backward at all), never zeroed
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for x in _batches(8):
            grads = torch.autograd.grad(_loss(model, x), list(model.parameters()))
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g
            opt.step()
    # THEN no alarm
    assert loop_problems(mw.findings) == []


def test_lbfgs_is_silent() -> None:
    # GIVEN LBFGS, whose closure zeroes before its backward
    model = _model()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=4)
    x = torch.randn(16, 8)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _loss(model, x)
        loss.backward()
        return loss

    with memwatch(store=False) as mw:
        for _ in range(5):
            opt.step(closure)
    # THEN no alarm
    assert loop_problems(mw.findings) == []


def test_the_watch_leaves_the_accumulated_gradients_alone() -> None:
    # GIVEN the buggy loop, watched and unwatched: THEN the same weights (memwatch only reads)
    def train(watch: bool) -> torch.Tensor:
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def run() -> None:
            for x in _batches(4):
                _loss(model, x).backward()
                opt.step()

        if watch:
            with memwatch(store=False):
                run()
        else:
            run()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(train(True), train(False))


# -- pure detector, hand-made evidence --------------------------------------------------------
def _carried(n: int, carried: int, serial: int = 1, **extra: object) -> Event:
    data = {
        "optimizer": "SGD",
        "optimizer_serial": serial,
        "variable": "opt",
        "carried_steps": carried,
        "passes_in_sum": carried + 1,
        **extra,
    }
    return event("grad-carried-over", n, data)


def test_two_carried_steps_are_below_the_threshold() -> None:
    events = [_carried(1, 1), _carried(2, 2)]
    assert detector.detect(analysis([step(i) for i in range(3)], events)) == []


def test_three_carried_steps_make_a_warning_per_optimizer() -> None:
    # GIVEN two optimizers: one carried 3 steps in a row, the other 2 steps twice
    events = [_carried(n, n) for n in (1, 2, 3)]
    events += [_carried(n, 1 + n % 2, serial=2, variable="opt_b") for n in (1, 2, 4, 5)]
    (finding,) = detector.detect(analysis([step(i) for i in range(6)], events))
    # THEN only the first is reported, with the run's length and the passes summed
    assert finding.variable == "opt"
    assert finding.evidence["carried_steps"] == 3
    assert finding.evidence["passes_in_sum"] == 4
    assert finding.first_step == 1


# -- the sample and its fixed twin -------------------------------------------------------------
def test_buggy_sample_names_the_optimizer_at_its_step_line(tmp_path: Path) -> None:
    # GIVEN samples/bugs/grad_never_reset.py (train_step clips and steps, never zeroes)
    run = run_sample(SAMPLE, "--steps", "8", out=tmp_path / "run.db")
    # THEN one warning names `self.optimizer` at its step line
    finding = only(run.findings, KIND)
    assert finding.variable == "self.optimizer"
    assert at(finding) == ("grad_never_reset.py", line_of(SAMPLE, "self.optimizer.step()"))
    assert finding.evidence["carried_steps"] == 7


def test_fixed_twin_is_clean(tmp_path: Path) -> None:
    run = run_sample("bugs/grad_never_reset_fixed.py", "--steps", "8", out=tmp_path / "run.db")
    assert problems(run.findings) == []
