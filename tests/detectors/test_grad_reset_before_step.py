"""grad-reset-before-step: gradients zeroed between backward and optimizer.step()."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import grad_reset_before_step as detector
from memwatch.collect.loop import LoopProbe
from memwatch.collect.loop.grad_reset import MAX_RESETS
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
def _reset_event(n: int, **extra: object) -> Event:
    data = {
        "via": "optimizer.zero_grad",
        "variable": "opt",
        "optimizer": "AdamW",
        "params_checked": 8,
        "grads_none": 8,
        "step_location": {"file": "train.py", "line": 12, "function": "main"},
    }
    return event("grad-reset", n, {**data, **extra})


def test_resets_at_two_steps_are_an_error_naming_the_call_and_the_step() -> None:
    data = analysis([step(i) for i in range(3)], [_reset_event(1), _reset_event(2)])
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


def test_one_step_after_a_reset_is_a_deliberate_one_off() -> None:
    # GIVEN a single reset that discarded a pass (a saliency pass read and cleared before
    #       training): THEN no finding
    assert detector.detect(analysis([step(i) for i in range(3)], [_reset_event(1)])) == []


def test_accumulation_with_passes_kept_says_how_many_were_discarded() -> None:
    # GIVEN resets that discarded 3 passes and let 1 reach each step
    events = [_reset_event(n, passes_discarded=3, passes_kept=1, grad_bytes=4096) for n in (1, 2)]
    (finding,) = detector.detect(analysis([step(i) for i in range(3)], events))
    # THEN the title counts the discarded passes and the detail the share the step used
    assert (
        finding.title
        == "`opt.zero_grad()` discards 3 backward passes before AdamW.step() uses them"
    )
    assert "1/4" in finding.detail and "4.0 KiB" in finding.detail
    assert "inside the `if`" in finding.fix


# -- gradient provenance: shapes of the bug, and healthy look-alikes -------------------------
def _batches(n: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 8, generator=g) for _ in range(n)]


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).pow(2).mean()


def test_zero_grad_inside_the_micro_batch_loop_discards_all_but_the_last_pass() -> None:
    # GIVEN an inner micro-batch loop that zeroes before each backward, the step after it
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with memwatch(store=False) as mw:
        for _ in range(4):
            for x in _batches(4):
                opt.zero_grad(set_to_none=True)
                _loss(model, x).backward()
            opt.step()
    # THEN an error at the zero_grad: 3 passes discarded, 1 kept, at every step
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "opt"
    assert (finding.evidence["passes_discarded"], finding.evidence["passes_kept"]) == (3, 1)
    assert len(finding.evidence["steps"]) >= 3


def test_trainer_zeroing_every_batch_but_stepping_every_kth_is_caught() -> None:
    # GIVEN a trainer class: step inside `if (i + 1) % k == 0`, zero_grad outside it
    class Trainer:
        def __init__(self) -> None:
            self.model = _model()
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)

        def train_step(self, i: int, x: torch.Tensor) -> None:
            _loss(self.model, x).backward()
            if (i + 1) % 4 == 0:
                self.optimizer.step()
            self.optimizer.zero_grad()

    trainer = Trainer()
    with memwatch(store=False) as mw:
        for i, x in enumerate(_batches(16)):
            trainer.train_step(i, x)
    # THEN the error names `self.optimizer` at its zero_grad, 3 passes of 4 lost
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "self.optimizer"
    assert finding.location is not None and finding.location.function == "train_step"
    assert finding.evidence["passes_discarded"] == 3


def test_module_zero_grad_per_micro_batch_is_caught() -> None:
    # GIVEN `model.zero_grad()` (the module's) before each micro-batch's backward
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for _ in range(3):
            for x in _batches(2):
                model.zero_grad()
                _loss(model, x).backward()
            opt.step()
    # THEN the error names `model` and one discarded pass per step
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "model"
    assert finding.evidence["passes_discarded"] == 1


def test_gradients_set_to_none_by_hand_before_the_step_are_caught() -> None:
    # GIVEN `p.grad = None` for every parameter between backward and step
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for x in _batches(4):
            _loss(model, x).backward()
            for p in model.parameters():
                p.grad = None
            opt.step()
    # THEN the error says the gradients were set to None by hand, none left at the step
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.evidence["via"] == "p.grad = None"
    assert finding.evidence["grads_none"] == finding.evidence["params_checked"]


def test_grad_scaler_loop_zeroing_after_the_scaled_backward_is_caught() -> None:
    # GIVEN a GradScaler loop: scaled backward, zero_grad, scaler.step
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    with memwatch(store=False) as mw:
        for x in _batches(4):
            scaler.scale(_loss(model, x)).backward()
            opt.zero_grad(set_to_none=False)  # None would make scaler.step refuse
            scaler.step(opt)
            scaler.update()
    # THEN the error names the optimizer's zero_grad
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "opt"


def test_the_optimizer_whose_accumulation_breaks_is_named_not_the_other() -> None:
    # GIVEN two optimizers over one loss's passes (encoder, head): the encoder's is zeroed
    #       every batch, both step every 2nd batch
    torch.manual_seed(0)
    encoder, head = nn.Linear(8, 16), nn.Linear(16, 1)
    opt_enc = torch.optim.SGD(encoder.parameters(), lr=0.1)
    opt_head = torch.optim.SGD(head.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for i, x in enumerate(_batches(8)):
            head(encoder(x)).pow(2).mean().backward()
            if (i + 1) % 2 == 0:
                opt_enc.step()
                opt_head.step()
                opt_head.zero_grad()
            opt_enc.zero_grad()
    # THEN one error, on `opt_enc`
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.variable == "opt_enc"


def test_deliberate_accumulation_is_silent() -> None:
    # GIVEN k=4 accumulation: backward every batch, step and zero_grad every 4th
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for i, x in enumerate(_batches(16)):
            (_loss(model, x) / 4).backward()
            if (i + 1) % 4 == 0:
                opt.step()
                opt.zero_grad()
    # THEN no alarm
    assert loop_problems(mw.findings) == []


def test_gan_discarding_the_generator_loss_in_the_discriminator_is_silent() -> None:
    # GIVEN both losses first, then: zero G, backward G (reaches D too), zero D (drops the
    #       G loss's D gradients, on purpose), backward D, step both, in either order
    for d_first in (False, True):
        torch.manual_seed(0)
        gen, disc = nn.Linear(4, 8), nn.Linear(8, 1)
        opt_g = torch.optim.Adam(gen.parameters(), lr=1e-3)
        opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
        with memwatch(store=False) as mw:
            for x in _batches(6):
                fake = gen(torch.randn(4, 4))
                loss_g = disc(fake).mean()
                loss_d = disc(x).mean() - disc(fake.detach()).mean()
                opt_g.zero_grad()
                loss_g.backward()
                opt_d.zero_grad()
                loss_d.backward()
                for opt in (opt_d, opt_g) if d_first else (opt_g, opt_d):
                    opt.step()
        # THEN no alarm
        assert loop_problems(mw.findings) == [], d_first


def test_grad_scaler_skipping_steps_is_silent() -> None:
    # GIVEN a GradScaler whose first scale overflows (its steps are skipped until the scale
    #       comes down) and zero_grad at the top of each step
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    #       and grows back after every real step (so skipped and real steps alternate)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, growth_interval=1)
    scales = []
    with memwatch(store=False) as mw:
        for x in _batches(8):
            opt.zero_grad()
            scaler.scale(_loss(model, x) * 4).backward()
            scaler.step(opt)
            scaler.update()
            scales.append(scaler.get_scale())
    # THEN no alarm: a step the scaler skipped still consumed the passes
    skipped = sum(1 for a, b in zip([2.0**127, *scales], scales, strict=False) if b < a)
    assert 3 <= skipped < len(scales)
    assert loop_problems(mw.findings) == []


def test_per_sample_gradients_set_by_hand_are_silent() -> None:
    # GIVEN torch.autograd.grad and torch.func.grad (neither writes .grad), zero_grad,
    #       then `p.grad = ...` by hand before the step
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    params = dict(model.named_parameters())

    def loss_of(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, p, (x,)).pow(2).mean()

    with memwatch(store=False) as mw:
        for i, x in enumerate(_batches(6)):
            if i % 2:
                grads = torch.autograd.grad(_loss(model, x), list(params.values()))
            else:
                detached = {k: v.detach() for k, v in params.items()}
                grads = tuple(torch.func.grad(loss_of)(detached, x).values())
            opt.zero_grad()
            for p, g in zip(params.values(), grads, strict=True):
                p.grad = g.clone()
            opt.step()
    # THEN no alarm
    assert loop_problems(mw.findings) == []


def test_a_saliency_pass_cleared_before_training_is_silent() -> None:
    # GIVEN one backward whose gradients are read (pruning scores) and cleared, then a
    #       correct loop
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        _loss(model, torch.randn(16, 8)).backward()
        scores = [p.grad.abs().sum().item() for p in model.parameters() if p.grad is not None]
        model.zero_grad()
        for x in _batches(6):
            opt.zero_grad()
            _loss(model, x).backward()
            opt.step()
    assert len(scores) == 4
    # THEN no alarm
    assert loop_problems(mw.findings) == []


def test_resets_with_no_step_after_them_stay_bounded_and_silent() -> None:
    # GIVEN an attribution loop: backward, read the gradients, zero_grad, for many inputs,
    #       with an optimizer that never steps
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        (probe,) = [p for p in mw._tracker.probes if isinstance(p, LoopProbe)]
        for x in _batches(200):
            _loss(model, x).backward()
            opt.zero_grad()
        (followed,) = probe.grad_reset._followed
        remembered = len(followed.discarded)
    # THEN no alarm, and what is remembered about the discarded passes stays bounded
    assert loop_problems(mw.findings) == []
    assert remembered == MAX_RESETS


def test_sam_two_passes_per_step_are_silent() -> None:
    # GIVEN sharpness-aware minimization: backward, perturb the weights by the gradient
    #       (an in-place update, not an optimizer step), zero_grad, backward at the
    #       perturbed weights, restore them and step the base optimizer
    model = _model()
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for x in _batches(6):
            _loss(model, x).backward()
            with torch.no_grad():
                eps = [0.05 * p.grad / (p.grad.norm() + 1e-12) for p in model.parameters()]
                for p, e in zip(model.parameters(), eps, strict=True):
                    p.add_(e)
            base.zero_grad()
            _loss(model, x).backward()
            with torch.no_grad():
                for p, e in zip(model.parameters(), eps, strict=True):
                    p.sub_(e)
            base.step()
            base.zero_grad()
    # THEN no alarm: the first pass's gradients moved the weights
    assert loop_problems(mw.findings) == []
