"""hooks-accumulate: hooks registered on every call or step and never removed, named by
their registration line and the module that holds them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from memwatch import memwatch
from memwatch.analysis.detectors import hooks_accumulate as detector
from memwatch.records import Finding
from tests.detectors.loop_helpers import analysis, event, of_kind, step

KIND = "hooks-accumulate"


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def _train_step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    loss = model(torch.randn(8, 16)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def _watched(loop: Callable[[], Any]) -> list[Finding]:
    torch.manual_seed(0)
    with memwatch(store=False) as mw:
        loop()
    return mw.findings


def _keep(module: nn.Module, args: Any, output: Any) -> None:
    module.last_mean = float(output.detach().mean())


# -- several shapes of the bug ----------------------------------------------------------------
def test_a_hook_registered_in_the_hand_loop_every_step_is_named_with_its_module() -> None:
    # GIVEN a loop that registers a forward hook on model[0] at every step, dropping the handle
    def loop() -> None:
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(20):
            model[0].register_forward_hook(_keep)  # BUG
            _train_step(model, opt)

    # WHEN it runs under memwatch
    (finding,) = of_kind(_watched(loop), KIND)
    # THEN a warning names the registration and the hooked module
    assert finding.severity == "warning"
    assert finding.variable == "model[0].register_forward_hook"
    assert finding.evidence["owner_path"] == "model.0"
    assert finding.evidence["max_per_owner"] >= 16
    assert finding.location is not None and finding.location.function == "loop"
    assert "handle.remove()" in finding.fix


class _Inject(nn.Module):
    """A model whose forward registers a pre-hook on each layer per call (X-LoRA shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.detach().mean()

        def pre(module: nn.Module, args: Any) -> None:
            module.scale = scale

        for layer in self.layers:
            layer.register_forward_pre_hook(pre)
        for layer in self.layers:
            x = layer(x)
        return x


def test_a_pre_hook_registered_in_forward_is_named() -> None:
    def loop() -> None:
        model = _Inject()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(16):
            _train_step(model, opt)

    (finding,) = of_kind(_watched(loop), KIND)
    assert finding.variable == "layer.register_forward_pre_hook"
    assert finding.location is not None and finding.location.function == "forward"
    assert finding.evidence["owners"] == 2


class _Clipper:
    """A helper object that registers gradient clamping hooks on the parameters."""

    def __init__(self, model: nn.Module) -> None:
        for p in model.parameters():
            p.register_hook(lambda g: g.clamp(-1, 1))  # BUG: handles dropped


class _Trainer:
    def __init__(self) -> None:
        self.model = _net()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01)

    def fit(self) -> None:
        for i in range(24):
            if i % 3 == 0:  # every k steps, through a helper
                _Clipper(self.model)
            _train_step(self.model, self.opt)


def test_tensor_hooks_on_parameters_every_k_steps_from_a_helper_are_named() -> None:
    # GIVEN a Trainer that creates a clipping helper every 3 steps, each adding tensor hooks
    (finding,) = of_kind(_watched(lambda: _Trainer().fit()), KIND)
    # THEN the tensor hook line is named, with the parameters as the holders
    assert finding.evidence["method"] == "register_hook"
    assert finding.evidence["owners"] == 4  # two weights, two biases
    assert finding.evidence["owner_type"] == "Parameter"
    assert "tensor hook" in finding.title


def test_a_callback_registering_a_global_module_hook_every_step_is_named() -> None:
    # GIVEN an on-step callback that registers a global forward hook each time
    def loop() -> None:
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def on_step() -> None:
            torch.nn.modules.module.register_module_forward_hook(_keep)

        callbacks = [on_step]
        for _ in range(16):
            _train_step(model, opt)
            for callback in callbacks:
                callback()

    try:
        (finding,) = of_kind(_watched(loop), KIND)
    finally:
        torch.nn.modules.module._global_forward_hooks.clear()
    assert finding.evidence["method"] == "register_module_forward_hook"
    assert finding.location is not None and finding.location.function == "on_step"


# -- healthy look-alikes ----------------------------------------------------------------------
def _registered_once() -> None:
    model = _net()
    handles = [m.register_forward_hook(_keep) for m in model if isinstance(m, nn.Linear)]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(20):
        _train_step(model, opt)
    for handle in handles:
        handle.remove()


def _registered_and_removed_per_step() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(20):
        handle = model[0].register_forward_hook(_keep)
        _train_step(model, opt)
        handle.remove()


def _removed_after_each_evaluation() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for i in range(1, 21):
        _train_step(model, opt)
        if i % 4 == 0:
            handles = [m.register_forward_hook(_keep) for m in model]
            with torch.no_grad():
                model(torch.randn(8, 16))
            for handle in handles:
                handle.remove()


def _activation_tensor_hooks_per_step() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    grads: list[float] = []
    for _ in range(20):
        hidden = model[0](torch.randn(8, 16))
        hidden.register_hook(lambda g: grads.append(float(g.norm())))  # dies with `hidden`
        loss = model[2](model[1](hidden)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _new_model_per_fold_each_hooked_once() -> None:
    kept = []
    for _ in range(6):
        model = _net()
        model[0].register_forward_hook(_keep)
        kept.append(model)  # every fold's model kept for an ensemble
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(4):
            _train_step(model, opt)


def _gradient_checkpointing() -> None:
    model = nn.Sequential(*(nn.Sequential(nn.Linear(16, 16), nn.ReLU()) for _ in range(3)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(16):
        x = torch.randn(8, 16, requires_grad=True)
        for block in model:
            x = checkpoint(block, x, use_reentrant=False)
        loss = x.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize(
    "loop",
    [
        _registered_once,
        _registered_and_removed_per_step,
        _removed_after_each_evaluation,
        _activation_tensor_hooks_per_step,
        _new_model_per_fold_each_hooked_once,
        _gradient_checkpointing,
    ],
    ids=["once", "removed-per-step", "removed-per-eval", "activation-hooks", "per-fold", "ckpt"],
)
def test_hooks_that_do_not_pile_up_are_silent(loop: Callable[[], None]) -> None:
    assert of_kind(_watched(loop), KIND) == []


# -- pure detector, hand-made evidence --------------------------------------------------------
def _live(n: int, live: int, per_owner: int) -> Any:
    return event(
        "live-hooks",
        n,
        {
            "method": "register_forward_hook",
            "live": live,
            "registered": live,
            "owners": max(1, live // max(1, per_owner)),
            "max_per_owner": per_owner,
            "owner_type": "Linear",
            "variable": "layer",
        },
    )


def test_a_setup_burst_that_stays_flat_is_silent() -> None:
    # GIVEN hooks added over the first steps (lazy setup), then flat for the run
    events = [_live(0, 2, 1), _live(1, 4, 2), _live(2, 6, 3), _live(40, 6, 3)]
    assert detector.detect(analysis([step(i) for i in range(41)], events)) == []


def test_a_count_that_rises_over_the_run_and_drops_when_the_model_dies_is_a_warning() -> None:
    events = [_live(4 * i, 3 * i, i) for i in range(1, 6)] + [_live(24, 0, 0)]
    (finding,) = detector.detect(analysis([step(i) for i in range(25)], events))
    assert finding.evidence["live"] == 15
    assert finding.evidence["rises"] == 5
    assert finding.first_step == 4


def test_an_internal_error_while_following_registrations_costs_one_notice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the probe's frame walk broken (an internal error on every registration)
    import memwatch.collect.hook_sites as hook_sites

    def broken(frame: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(hook_sites, "first_user_frame", broken)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False):
        # WHEN the program registers and removes hooks, and trains
        for _ in range(6):
            handle = model[0].register_forward_hook(_keep)
            _train_step(model, opt)
            handle.remove()
    # THEN the handles work, the hooks ran, and one notice says the part was switched off
    assert len(model[0]._forward_hooks) == 0
    assert hasattr(model[0], "last_mean")
    assert capsys.readouterr().err.count("hooks probe (registration) switched off") == 1
