"""graph-kept-across-step: last step's graph or outputs kept alive one step on.

The same bug written several ways (a module attribute, a dict on a helper object, a
closure's nonlocal, a framework-style state object, retain_graph on every backward) must
be found and its holder named; healthy look-alikes must stay silent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from memwatch import memwatch
from memwatch.analysis import AnalysisInput
from memwatch.analysis.detectors import graph_kept_across_step as detector
from memwatch.records import Event, Finding, Location

KIND = "graph-kept-across-step"
STEPS = 10
KiB = 1024


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 512), nn.GELU(), nn.Linear(512, 512))


def _run(step: Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor], Any]) -> list[Finding]:
    """Run ``step`` for STEPS batches under memwatch; the findings of this kind."""
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(STEPS):
            step(model, opt, torch.randn(128, 64))
    return [f for f in mw.findings if f.kind == KIND]


def _train(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    loss = out.pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return out


# -- the bug, four ways ------------------------------------------------------------------------
class _Keeps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(512, 512), nn.GELU())
        self.last_activity: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        self.last_activity = y  # the bug: y.detach()
        return y


def test_a_submodule_attribute_keeping_its_output_is_named_at_the_store() -> None:
    # GIVEN a submodule that keeps its last output (with graph) as an attribute
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 512), _Keeps(), nn.Linear(512, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(STEPS):
            loss = model(torch.randn(128, 64)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    # WHEN the run ends THEN a warning names the attribute path and the storing line
    (finding,) = [f for f in mw.findings if f.kind == KIND]
    assert finding.severity == "warning"
    assert finding.variable == "model[1].last_activity"
    assert finding.location is not None and finding.location.function == "forward"
    assert finding.bytes == 128 * 512 * 4
    assert ".detach()" in finding.fix


class _Recorder:
    def __init__(self) -> None:
        self.cache: dict[str, torch.Tensor] = {}

    def remember(self, out: torch.Tensor) -> None:
        self.cache["out"] = out  # the bug: out.detach()


def test_a_dict_on_a_helper_object_is_named() -> None:
    # GIVEN a helper object whose dict keeps the last output
    recorder = _Recorder()
    findings = _run(lambda m, o, x: recorder.remember(_train(m, o, x)))
    # THEN the dict value is the holder, at the line that stores it
    (finding,) = findings
    assert finding.variable == "recorder.cache"
    assert finding.location is not None and finding.location.function == "remember"


def test_a_closure_nonlocal_is_named() -> None:
    # GIVEN a step function that keeps the last output in a nonlocal
    def make_step() -> Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor], None]:
        last = None

        def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
            nonlocal last
            last = _train(model, opt, x)  # the bug: .detach()

        return step

    findings = _run(make_step())
    # THEN the closure variable is the holder
    (finding,) = findings
    assert finding.variable == "last"
    assert finding.evidence["holder_kind"] == "closure"
    assert finding.location is not None and finding.location.function == "step"


class _State:
    def __init__(self) -> None:
        self.output: Any = None


class _Engine:
    """A framework-style loop: the state object keeps the process function's output."""

    def __init__(self, process: Callable[[Any], Any]) -> None:
        self.process = process
        self.state = _State()

    def run(self, batches: list[torch.Tensor]) -> None:
        for batch in batches:
            self.state.output = self.process(batch)


def test_a_framework_state_object_is_named_at_the_engine_store() -> None:
    # GIVEN an engine whose state keeps (loss, output) of the last iteration
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def process(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(x)
        loss = out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, out

    with memwatch(store=False) as mw:
        _Engine(process).run([torch.randn(128, 64) for _ in range(STEPS)])
    # THEN the holder is the state attribute, stored in Engine.run
    (finding,) = [f for f in mw.findings if f.kind == KIND]
    assert finding.variable == "self.state.output"
    assert finding.location is not None and finding.location.function == "run"


def _backward_all(losses: list[torch.Tensor], retain_last: bool) -> None:
    for i, loss in enumerate(losses):
        loss.backward(retain_graph=retain_last or i < len(losses) - 1)


def _flat_loop_with_two_losses(retain_last: bool) -> list[Finding]:
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(STEPS):
            out = model(torch.randn(128, 64))
            first, second = out.pow(2).mean(), out.abs().mean()
            opt.zero_grad()
            _backward_all([first, second], retain_last)
            opt.step()
    return [f for f in mw.findings if f.kind == KIND]


def test_retain_graph_on_the_last_backward_is_reported_at_that_call() -> None:
    # GIVEN a flat loop whose two losses are each backpropagated with retain_graph=True
    # (the last one too): `first`/`second` keep the graph until the next forward rebinds
    (finding,) = _flat_loop_with_two_losses(retain_last=True)
    # THEN it is reported at the backward call, with the retained saved bytes
    assert finding.evidence["cause"] == "retain-graph"
    assert finding.variable == "loss"
    assert finding.location is not None and finding.location.function == "_backward_all"
    assert finding.bytes is not None and finding.bytes >= 128 * KiB
    assert "last one must free the graph" in finding.fix


def test_retain_graph_before_a_final_backward_without_it_is_silent() -> None:
    # GIVEN the same loop where only the last backward frees the graph
    # THEN nothing is reported
    assert _flat_loop_with_two_losses(retain_last=False) == []


def test_retain_graph_on_the_last_backward_inside_a_step_function_is_silent() -> None:
    # GIVEN every backward retains, but the step is a function: its locals die at return
    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
        out = model(x)
        opt.zero_grad()
        _backward_all([out.pow(2).mean(), out.abs().mean()], retain_last=True)
        opt.step()

    # THEN nothing is kept across the step, and nothing is reported
    assert _run(step) == []


# -- healthy look-alikes -------------------------------------------------------------------------
def test_storing_item_or_detached_outputs_is_silent() -> None:
    # GIVEN helpers that keep last step's loss as a number and the output detached
    recorder = _Recorder()

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
        out = _train(model, opt, x)
        recorder.remember(out.detach())
        recorder.loss = out.pow(2).mean().item()  # type: ignore[attr-defined]

    # THEN nothing is reported
    assert _run(step) == []


def test_a_plain_loop_whose_locals_hold_last_output_is_left_to_lingering() -> None:
    # GIVEN a flat loop whose `out` is alive at the next forward (Python scoping)
    assert _run(_train) == []


def test_a_second_backward_on_purpose_then_a_final_one_without_retain_is_silent() -> None:
    # GIVEN a second backward on purpose: retain_graph for the first, none for the last
    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
        out = model(x)
        opt.zero_grad()
        out.pow(2).mean().backward(retain_graph=True)
        out.abs().mean().backward()
        opt.step()

    assert _run(step) == []


def test_gradient_checkpointing_is_silent() -> None:
    # GIVEN a model run through torch.utils.checkpoint (recomputed in backward)
    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
        out = checkpoint(model, x, use_reentrant=False)
        loss = out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    assert _run(step) == []


def test_gan_with_detached_fake_and_wgan_gp_are_silent() -> None:
    # GIVEN a GAN step (fake.detach() for D) followed by a WGAN-GP style critic penalty
    torch.manual_seed(0)
    gen, disc = _model(), nn.Sequential(nn.Linear(512, 256), nn.GELU(), nn.Linear(256, 1))
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-4)
    with memwatch(store=False) as mw:
        for _ in range(STEPS):
            real, fake = torch.randn(128, 512), gen(torch.randn(128, 64))
            alpha = torch.rand(128, 1)
            mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
            (grads,) = torch.autograd.grad(disc(mixed).sum(), mixed, create_graph=True)
            penalty = ((grads.norm(2, dim=1) - 1) ** 2).mean()
            loss_d = disc(fake.detach()).mean() - disc(real).mean() + 10 * penalty
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = -disc(fake).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
    # THEN no warning of any kind
    assert [f.kind for f in mw.findings if f.severity != "info"] == []
    assert KIND not in {f.kind for f in mw.findings}


# -- the pure detector ---------------------------------------------------------------------------
def _event(step: int, occurrences: int, **data: Any) -> Event:
    base: dict[str, Any] = {
        "cause": "held",
        "holder": "model.encoder.last",
        "holder_kind": "attribute",
        "tensors": 1,
        "tensor_bytes": 512 * KiB,
        "saved_peak_bytes": 4096 * KiB,
        "tensors_from_step": step - 1,
        "occurrences": occurrences,
    }
    base.update(data)
    return Event(KIND, step, 0.0, base, Location("train.py", 12, "forward"))


def _detect(*events: Event) -> list[Finding]:
    return detector.detect(AnalysisInput(steps=(), events=events))


def test_detector_needs_two_steps() -> None:
    # GIVEN one step's kept output only (the last batch kept for a log line) THEN nothing
    assert _detect(_event(1, 1)) == []
    # WHEN it is seen at the next step too THEN a warning with the bytes and share
    (finding,) = _detect(_event(1, 1), _event(2, 2))
    assert finding.severity == "warning"
    assert finding.bytes == 512 * KiB
    assert finding.evidence["peak_fraction"] == 0.125


def test_detector_ignores_bytes_that_do_not_matter_at_the_peak() -> None:
    # GIVEN a kept tensor under 5% of the step's saved peak THEN nothing
    small = {"tensor_bytes": 100 * KiB, "saved_peak_bytes": 4096 * KiB}
    assert _detect(_event(1, 1, **small), _event(2, 2, **small)) == []
