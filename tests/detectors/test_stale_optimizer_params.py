"""stale-optimizer-params: an optimizer steps parameters no module that runs holds any more."""

from __future__ import annotations

import io
import sys

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import stale_optimizer_params as detector
from memwatch.evidence import StaleOptimizerParams
from memwatch.records import Location
from tests.detectors.loop_helpers import analysis, loop_problems, of_kind, step

KIND = "stale-optimizer-params"
MiB = 1024 * 1024
WHERE = Location("train.py", 30, "main")


def _check(n: int, **fields: object) -> object:
    values: dict[str, object] = {
        "optimizer": "Adam",
        "optimizer_serial": 1,
        "variable": "optimizer",
        "params": 4,
        "orphans": 4,
        "orphan_bytes": 2 * MiB,
        "state_bytes": 4 * MiB,
        "forwarded": 1,
        "modules": ("RNNModel",),
    }
    values.update(fields)
    return StaleOptimizerParams(**values).event(n, WHERE)  # type: ignore[arg-type]


def _judge(*events: object) -> list:
    steps = [step(n) for n in range(0, 40)]
    return detector.detect(analysis(steps, events))  # type: ignore[arg-type]


def _model(width: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 1))


# -- the rule, on hand-made evidence -------------------------------------------------------


def test_two_stale_checks_of_every_parameter_are_an_error_whatever_the_size() -> None:
    # GIVEN two consecutive checks where none of the optimizer's parameters is in a module
    #       that ran and none got a gradient (tiny: 1 KiB pinned)
    findings = _judge(
        _check(8, orphan_bytes=1024, state_bytes=0), _check(12, orphan_bytes=1024, state_bytes=0)
    )
    # THEN one error names the optimizer, the steps and the bytes it pins
    (finding,) = findings
    assert finding.severity == "error"
    assert finding.variable == "optimizer"
    assert finding.first_step == 8
    assert finding.bytes == 1024
    assert finding.evidence["steps"] == [8, 12]
    assert "not trained" in finding.detail


def test_one_stale_check_is_not_enough() -> None:
    # GIVEN the model replaced just before one check (the window may still hold the old one)
    # THEN nothing yet
    assert _judge(_check(8)) == []


def test_a_gap_between_stale_checks_breaks_the_run() -> None:
    # GIVEN stale, then a check with the orphans gone (the model used again), then stale
    findings = _judge(_check(4), _check(8, orphans=0), _check(12))
    # THEN no two consecutive stale checks: silent
    assert findings == []


def test_orphans_that_get_gradients_are_used_without_a_module() -> None:
    # GIVEN orphans that had nonzero gradients at the step (a free nn.Parameter, master
    #       weights of mixed precision, torch.func weights)
    events = [
        _check(n, orphans_with_grad=4, orphan_grads_checked=4, orphan_grads_zero=1)
        for n in (4, 8, 12)
    ]
    # THEN they are in use: silent
    assert _judge(*events) == []


def test_orphans_whose_gradients_are_zero_tensors_are_stale() -> None:
    # GIVEN zero_grad(set_to_none=False): the orphans keep all-zero gradient tensors
    events = [
        _check(n, orphans_with_grad=4, orphan_grads_checked=4, orphan_grads_zero=4, grad_bytes=MiB)
        for n in (4, 8)
    ]
    # THEN stale, and the gradient bytes count in what is pinned
    (finding,) = _judge(*events)
    assert finding.bytes == 7 * MiB


def test_some_stale_parameters_warn_only_above_the_floor() -> None:
    # GIVEN 2 of 6 parameters orphaned: below MIN_PINNED_BYTES, then above it
    small = [_check(n, params=6, orphans=2, orphan_bytes=1024, state_bytes=0) for n in (4, 8)]
    big = [_check(n, params=6, orphans=2, optimizer_serial=2) for n in (4, 8)]
    # THEN only the big one, as a warning
    (finding,) = _judge(*small, *big)
    assert finding.severity == "warning"
    assert finding.bytes == 6 * MiB


def test_checks_without_forwards_are_not_stale() -> None:
    # GIVEN the optimizer stepped but no root module ran since its previous check
    # THEN there is nothing to compare with: silent
    assert _judge(_check(4, forwarded=0), _check(8, forwarded=0)) == []


def test_each_optimizer_is_judged_on_its_own_checks() -> None:
    # GIVEN two optimizers, each with one stale check, interleaved
    # THEN no optimizer has two in a row: silent
    assert _judge(_check(4, optimizer_serial=1), _check(8, optimizer_serial=2)) == []


# -- end to end ----------------------------------------------------------------------------


def _train(model: nn.Module, opt: torch.optim.Optimizer, set_to_none: bool = True) -> None:
    opt.zero_grad(set_to_none=set_to_none)
    model(torch.randn(8, 16)).pow(2).mean().backward()
    opt.step()


def test_reloading_the_model_under_an_adam_optimizer_is_an_error_with_its_state_bytes() -> None:
    # GIVEN word_language_model's reload: `model = torch.load(f)` after 12 Adam steps,
    #       the optimizer built on the first model keeps stepping
    torch.manual_seed(0)
    model = _model(256)
    param_bytes = sum(p.numel() * 4 for p in model.parameters())
    with memwatch(store=False) as mw:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        built_at = sys._getframe().f_lineno - 1
        for _ in range(12):
            _train(model, opt)
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        model = torch.load(buffer, weights_only=False)
        for _ in range(20):
            _train(model, opt)
    # THEN an error names `optimizer`, pinning the old parameters and their Adam state
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.severity == "error"
    assert finding.variable == "opt"
    assert finding.evidence["orphans"] == finding.evidence["params"] == 4
    assert finding.evidence["orphan_bytes"] == param_bytes
    assert finding.evidence["state_bytes"] >= 2 * param_bytes  # exp_avg + exp_avg_sq
    assert finding.evidence["created_at"]["line"] == built_at
    assert finding.location is not None and finding.location.function == "_train"


def test_stale_parameters_with_zeroed_gradient_tensors_are_caught() -> None:
    # GIVEN a model re-created after the optimizer, zero_grad(set_to_none=False)
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with memwatch(store=False) as mw:
        for _ in range(6):
            _train(model, opt, set_to_none=False)
        model = _model()
        for _ in range(16):
            _train(model, opt, set_to_none=False)
    # THEN found: the old gradients are zero tensors, never refilled
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.evidence["grad_bytes"] > 0


def test_rebuilding_model_and_optimizer_together_is_silent() -> None:
    # GIVEN k-fold: a new model AND a new optimizer per fold
    torch.manual_seed(0)
    with memwatch(store=False) as mw:
        for _ in range(3):
            model = _model()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            for _ in range(12):
                _train(model, opt)
    # THEN nothing from the loop detectors
    assert loop_problems(mw.findings) == []


def test_frozen_parameters_listed_in_the_optimizer_are_silent() -> None:
    # GIVEN a frozen backbone run under no_grad outside the model the loss comes from, its
    #       parameters still listed in the optimizer with requires_grad=False
    torch.manual_seed(0)
    backbone, head = nn.Linear(16, 16), nn.Linear(16, 1)
    backbone.requires_grad_(False)
    unused = nn.Linear(512, 1024)  # a branch dropped from the forward, also frozen (2 MiB)
    unused.requires_grad_(False)
    params = [*backbone.parameters(), *head.parameters(), *unused.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    with memwatch(store=False) as mw:
        for _ in range(20):
            opt.zero_grad()
            head(backbone(torch.randn(8, 16))).pow(2).mean().backward()
            opt.step()
    # THEN frozen parameters are not stale
    assert loop_problems(mw.findings) == []


def test_gan_optimizers_stepping_in_alternate_steps_are_silent() -> None:
    # GIVEN a GAN: G and D run every iteration, their optimizers step in alternate ones
    torch.manual_seed(0)
    g, d = nn.Linear(8, 16), nn.Linear(16, 1)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3)
    with memwatch(store=False) as mw:
        for i in range(40):
            fake = g(torch.randn(8, 8))
            if i % 2:
                opt_d.zero_grad()
                d(fake.detach()).mean().backward()
                opt_d.step()
            else:
                opt_g.zero_grad()
                (-d(fake).mean()).backward()
                opt_g.step()
    # THEN nothing stale
    assert of_kind(mw.findings, KIND) == []


class _Sometimes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk, self.aux = nn.Linear(16, 16), nn.Linear(16, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = self.trunk(x)
        return self.aux(h) if self.calls % 2 else h.mean(1, keepdim=True)


def test_a_submodule_used_every_other_step_is_silent() -> None:
    # GIVEN a model whose aux head runs only every other step (no gradient on the others)
    torch.manual_seed(0)
    model = _Sometimes()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for _ in range(24):
            _train(model, opt)
    # THEN it is part of a module that runs: not stale
    assert of_kind(mw.findings, KIND) == []


def test_a_free_parameter_used_without_a_module_is_silent() -> None:
    # GIVEN a learnable scale outside any module, used in every loss
    torch.manual_seed(0)
    model = _model()
    temperature = nn.Parameter(torch.ones(1024, 512))  # 2 MiB, above the warning floor
    opt = torch.optim.Adam([*model.parameters(), temperature], lr=1e-3)
    with memwatch(store=False) as mw:
        for _ in range(20):
            opt.zero_grad()
            (model(torch.randn(8, 16)).pow(2).mean() * temperature.mean()).backward()
            opt.step()
    # THEN it gets gradients: in use, not stale
    assert of_kind(mw.findings, KIND) == []


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk, self.fc = nn.Linear(16, 512), nn.Linear(512, 1024)  # fc: 2 MiB

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x))


def test_a_submodule_replaced_inside_the_model_warns_once_the_walk_is_refreshed() -> None:
    # GIVEN `model.fc = nn.Linear(...)` after the optimizer was built: the model keeps
    #       running, its old head (2 MiB + momentum) stays in the optimizer
    torch.manual_seed(0)
    model = _Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with memwatch(store=False) as mw:
        for i in range(100):
            if i == 6:
                model.fc = nn.Linear(512, 1024)
            _train(model, opt)
    # THEN a warning (some parameters still used) for the 2 orphans, after the cached
    #      parameter ids were walked again
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.severity == "warning"
    assert (finding.evidence["orphans"], finding.evidence["params"]) == (2, 4)
    assert finding.evidence["state_bytes"] == finding.evidence["orphan_bytes"] > 2 * MiB


def test_layers_swapped_in_place_are_caught_within_a_few_steps() -> None:
    # GIVEN nni's pruning speed-up (microsoft/nni#4521): every layer of the model replaced
    #       in place with setattr (the model object is kept), the old optimizer reused
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with memwatch(store=False) as mw:
        for i in range(20):
            if i == 6:
                setattr(model, "0", nn.Linear(16, 32))
                setattr(model, "2", nn.Linear(32, 4))
            _train(model, opt)
    # THEN within 14 steps of the swap (a few checks, no wait for the periodic fresh walk)
    #      an error says the running model is not trained
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.severity == "error"
    assert finding.evidence["orphans"] == finding.evidence["params"] == 4


def test_layers_swapped_in_place_with_a_new_optimizer_are_silent() -> None:
    # GIVEN the same swap followed by a new optimizer over the new layers
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with memwatch(store=False) as mw:
        for i in range(20):
            if i == 6:
                setattr(model, "0", nn.Linear(16, 32))
                setattr(model, "2", nn.Linear(32, 4))
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            _train(model, opt)
    # THEN nothing is said
    assert of_kind(mw.findings, KIND) == []
