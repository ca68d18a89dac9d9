"""graph-retained-in-inference: forwards with grad enabled whose graph no backward uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import graph_retained_in_inference as detector
from memwatch.collect import sampling
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

KIND = "graph-retained-in-inference"
SAMPLE = "bugs/graph_retained_in_inference.py"


def test_buggy_sample_names_the_kept_outputs_at_the_model_call(tmp_path: Path) -> None:
    # GIVEN a training loop whose validation forgot torch.no_grad() and keeps its outputs
    # WHEN it runs under memwatch (one validation pass)
    run = run_sample(SAMPLE, "--steps", "10", out=tmp_path / "run.db")
    # THEN an error names the list that keeps the graphs, at the model call
    finding = only(run.findings, KIND)
    assert finding.severity == "error"
    assert finding.variable == "outputs"
    line = line_of(SAMPLE, "outputs.append(model(")
    assert at(finding) == ("graph_retained_in_inference.py", line)
    assert finding.bytes and finding.bytes > 1024 * 1024
    assert "no_grad" in finding.fix


def test_fixed_twin_is_clean(tmp_path: Path) -> None:
    # GIVEN the same validation under torch.no_grad()
    run = run_sample(
        "bugs/graph_retained_in_inference_fixed.py", "--steps", "10", out=tmp_path / "run.db"
    )
    # THEN nothing at warning level or above
    assert problems(run.findings) == []


def _train_step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("guard", [torch.no_grad, torch.inference_mode])
def test_evaluation_without_grad_is_silent(guard: type) -> None:
    # GIVEN training with an evaluation pass under no_grad / inference_mode every 3 steps
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for i in range(12):
            _train_step(model, opt)
            if i % 3 == 2:
                model.eval()
                with guard():
                    kept = [model(torch.randn(32, 16)) for _ in range(4)]
                model.train()
                del kept
    # THEN no graph is built, nothing is reported
    assert problems(mw.findings) == []


def test_episodes_growing_longer_are_not_inference() -> None:
    # GIVEN a REINFORCE-style loop: one forward per environment step on a fresh state,
    #       episodes getting longer, one backward over the whole episode
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 2))
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    with memwatch(store=False) as mw:
        for episode in range(10):
            log_probs = []
            for _ in range(5 + 3 * episode):
                state = torch.randn(8)  # a fresh observation from the environment
                dist = torch.distributions.Categorical(logits=policy(state))
                log_probs.append(dist.log_prob(dist.sample()))
            loss = -torch.stack(log_probs).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    # THEN every forward fed the backward: no inference (nor unbatched/micro-batch) alarm
    assert loop_problems(mw.findings) == []


@pytest.mark.parametrize("k", [5, 6])
def test_a_leak_starting_at_step_k_is_reported_by_step_k_plus_5(k: int) -> None:
    # GIVEN healthy training that, from step k on, also runs a validation forward without
    #       no_grad each step and keeps its output
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    kept: list[torch.Tensor] = []
    seen_at: int | None = None
    with memwatch(store=False) as mw:
        for i in range(k + 6):
            _train_step(model, opt)
            if i >= k:
                model.eval()
                kept.append(model(torch.randn(64, 16)))
                model.train()
            # WHEN we look at the findings after every step
            found = of_kind(mw.findings, KIND)
            if i < k:
                assert found == [], f"false alarm at healthy step {i}"
            elif found and seen_at is None:
                seen_at = i
    # THEN the kept graphs are reported within five steps, as an error (they pile up)
    assert seen_at is not None and seen_at <= k + 5, f"leak from step {k} seen at {seen_at}"
    finding = of_kind(mw.findings, KIND)[0]
    assert finding.severity == "error"
    assert finding.variable == "kept"


# -- pure detector, hand-made evidence --------------------------------------------------------
def _fwb(n: int, **data: object) -> object:
    base = {
        "forwards": 1,
        "eval_mode_forwards": 0,
        "bytes": 100_000,
        "peak_alive_bytes": 100_000,
        "saved_at_end": 0,
        "stale_at_end": 0,
        "step_backwards": 1,
        "step_forwards": 2,
        "model": "Net",
        "variable": "out",
        "callee": "model",
    }
    base.update(data)
    return event("forward-without-backward", n, base)


def test_one_eval_forward_freed_at_once_is_a_warning() -> None:
    # GIVEN one eval-mode forward with grad enabled whose graph was dropped right away
    data = analysis([step(i) for i in range(6)], [_fwb(3, eval_mode_forwards=1)])
    (finding,) = detector.detect(data)
    # THEN a warning (wasted peak), not an error
    assert finding.severity == "warning"
    assert finding.first_step == 3
    assert finding.bytes == 100_000


def test_graphs_alive_together_in_one_pass_are_an_error() -> None:
    # GIVEN an evaluation pass of 8 forwards whose graphs were all alive at its end
    data = analysis(
        [step(i) for i in range(6)],
        [
            _fwb(
                2,
                forwards=8,
                eval_mode_forwards=8,
                bytes=800_000,
                peak_alive_bytes=800_000,
                variable="outputs",
            )
        ],
    )
    (finding,) = detector.detect(data)
    assert finding.severity == "error"
    assert finding.variable == "outputs"
    assert finding.bytes == 800_000


def test_inference_only_outputs_kept_across_steps_are_an_error_with_growth() -> None:
    # GIVEN an inference-only run (no backward) whose saved bytes survive and grow per step
    events = [_fwb(i, step_backwards=0, stale_at_end=i * 50_000) for i in range(8)]
    (finding,) = detector.detect(analysis([step(i, backwards=0) for i in range(8)], events))
    assert finding.severity == "error"
    assert finding.growth_per_step_bytes == 50_000


def test_a_single_train_mode_forward_per_training_step_is_silent() -> None:
    # GIVEN one train-mode forward per training step whose output is not in the loss
    #       (a frozen feature extractor read through hooks)
    events = [_fwb(i) for i in range(10)]
    # THEN it is not taken for evaluation
    assert detector.detect(analysis([step(i) for i in range(10)], events)) == []


def test_many_dropped_forwards_report_the_bytes_of_one() -> None:
    # GIVEN 65 inference forwards (judged together) each freed before the next one
    events = [_fwb(64, forwards=65, bytes=650_000, peak_alive_bytes=10_000, step_backwards=0)]
    (finding,) = detector.detect(analysis([step(i, backwards=0) for i in range(65)], events))
    # THEN a warning about ~10 kB per forward, not 650 kB held
    assert finding.severity == "warning"
    assert finding.bytes == 10_000
    assert finding.title.startswith("65 forwards of `model` ran with grad enabled")


def test_forwards_on_a_step_that_counted_nothing_are_a_warning_without_a_size() -> None:
    # GIVEN 6 evaluation forwards on a step that counted no saved tensors (sampling)
    events = [_fwb(9, forwards=6, bytes=0, peak_alive_bytes=0, counted_forwards=0)]
    (finding,) = detector.detect(analysis([step(i) for i in range(12)], events))
    # THEN a warning that names no size it did not measure
    assert finding.severity == "warning"
    assert finding.bytes is None
    assert "B" not in finding.title.split(":")[-1]
    assert "not measured" in finding.detail
    assert finding.evidence["largest_pass_bytes"] is None


def test_sizes_come_from_the_forwards_that_were_counted() -> None:
    # GIVEN an uncounted evaluation step, then one counted from its middle on (4 of its 6
    #       forwards counted, their graphs alive together)
    events = [
        _fwb(9, forwards=6, bytes=0, peak_alive_bytes=0, counted_forwards=0),
        _fwb(16, forwards=6, bytes=400_000, peak_alive_bytes=400_000, counted_forwards=4),
    ]
    (finding,) = detector.detect(analysis([step(i) for i in range(20)], events))
    # THEN the counted forwards piled up: an error with their size, all 12 forwards told
    assert finding.severity == "error"
    assert finding.bytes == 400_000
    assert finding.title.startswith("4 forwards of `model` with grad enabled kept")
    assert finding.evidence["forwards"] == 12
    assert finding.evidence["bytes_counted_steps"] == 1


def test_the_closing_step_dropping_the_outputs_does_not_hide_the_growth() -> None:
    # GIVEN kept outputs growing step after step, then the script's function returns
    #       (outputs freed) before the watch closes its last, partial step
    events = [
        _fwb(i, step_backwards=0, stale_at_end=i * 50_000, boundary="forward") for i in range(8)
    ]
    events.append(_fwb(8, step_backwards=0, stale_at_end=0, boundary="end"))
    (finding,) = detector.detect(analysis([step(i, backwards=0) for i in range(9)], events))
    # THEN the growth is still reported
    assert finding.severity == "error"
    assert finding.growth_per_step_bytes == 50_000


def _gan(detach_fake_for_d: bool, extra_unused_forward: bool = False) -> list[str]:
    torch.manual_seed(0)
    net_g = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 64))
    net_d = nn.Sequential(nn.Linear(64, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(net_d.parameters(), lr=1e-4)
    bce = nn.BCEWithLogitsLoss()
    kept = []
    with memwatch(store=False) as mw:
        for _ in range(12):
            real, fake = torch.randn(256, 64), net_g(torch.randn(256, 16))
            ones, zeros = torch.ones(256, 1), torch.zeros(256, 1)
            # both losses are built before either backward (G's first)
            loss_g = bce(net_d(fake), ones)
            d_fake = fake.detach() if detach_fake_for_d else fake
            loss_d = bce(net_d(real), ones) + bce(net_d(d_fake), zeros)
            if extra_unused_forward:
                # two forwards per step that no backward ever reaches
                kept.extend(net_d(torch.randn(256, 64)) for _ in range(2))
            opt_g.zero_grad()
            loss_g.backward(retain_graph=not detach_fake_for_d)
            opt_d.zero_grad()
            loss_d.backward()
            opt_g.step()
            opt_d.step()
            kept = kept[-4:]
    return [f.kind for f in mw.findings if f.severity in ("warning", "error")]


def test_gan_forwards_used_by_the_steps_second_backward_are_not_inference() -> None:
    # GIVEN a GAN step: G forward, D on fake (used by loss_g's backward), D on real and
    # on fake.detach() (used only by loss_d's backward, which runs second)
    # WHEN it runs under memwatch
    # THEN no forward counts as an unused graph (each backward pass of the step counts)
    assert KIND not in _gan(detach_fake_for_d=True)


def test_a_forward_no_backward_of_the_step_reaches_is_still_reported() -> None:
    # GIVEN the same GAN plus, every step, two more D forwards whose outputs are only kept
    # WHEN it runs under memwatch
    # THEN those forwards are still unused graphs
    assert KIND in _gan(detach_fake_for_d=True, extra_unused_forward=True)


def test_gradient_penalty_forwards_used_by_autograd_grad_are_not_inference() -> None:
    # GIVEN a WGAN-GP critic step: D on fake.detach() and on real, then D on the
    # interpolates and the penalty through torch.autograd.grad(create_graph=True), then
    # d_loss.backward() (the first two forwards are used only by that last backward)
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 64))
    critic = nn.Sequential(nn.Linear(64, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))
    opt_d = torch.optim.Adam(critic.parameters(), lr=1e-4)
    opt_g = torch.optim.Adam(gen.parameters(), lr=1e-4)
    with memwatch(store=False) as mw:
        for step_index in range(12):
            real, fake = torch.randn(256, 64), gen(torch.randn(256, 16))
            critic_terms = critic(fake.detach()).mean() - critic(real).mean()
            alpha = torch.rand(256, 1)
            mixed = (alpha * real + (1 - alpha) * fake.detach()).requires_grad_(True)
            grads = torch.autograd.grad(
                critic(mixed).sum(), mixed, create_graph=True, retain_graph=True
            )[0]
            penalty = ((grads.norm(2, dim=1) - 1) ** 2).mean()
            d_loss = critic_terms + 10 * penalty
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            if step_index % 2 == 0:
                g_loss = -critic(gen(torch.randn(256, 16))).mean()
                opt_g.zero_grad()
                g_loss.backward()
                opt_g.step()
    # THEN no forward counts as an unused graph
    assert not [f for f in mw.findings if f.kind == KIND and f.severity != "info"]


# -- while sampling is on: evaluation passes on steps that count no saved tensors ------------
# Source of the first shape: https://github.com/metatensor/metatrain/issues/702 (`mtt eval`
# kept every batch's predictions with autograd on); the others are the same mistake as
# other people write it. The stride is pinned to its longest, so the evaluations fall on
# steps that count no saved tensors (on a fast machine most steps are such steps).
EVERY = 7  # an evaluation after every 7th training step ...
FIRST_EVAL = 20  # ... from this step on (the warm-up is over)


def _evaluate_into_helper_list(model: nn.Module, batches: list[torch.Tensor], _: object) -> int:
    predictions = []
    for xb in batches:
        predictions.append(model(xb))  # autograd on: every batch's graph kept until the dump
    return len(torch.cat([p.detach() for p in predictions]))


def _evaluate_summing_floats(model: nn.Module, batches: list[torch.Tensor], _: object) -> int:
    total = 0.0
    for xb in batches:  # each graph is freed at once: saved for nothing, not kept
        total += model(xb).pow(2).mean().item()
    return int(total)


class _Predictions:
    def __init__(self) -> None:
        self.by_batch: dict[int, torch.Tensor] = {}


def _evaluate_into_object_dict(model: nn.Module, batches: list[torch.Tensor], log: object) -> int:
    assert isinstance(log, _Predictions)
    log.by_batch = {}
    for i, xb in enumerate(batches):
        log.by_batch[i] = model(xb)
    return len(log.by_batch)


def _evaluate_through_a_closure(model: nn.Module, batches: list[torch.Tensor], _: object) -> int:
    predict = lambda xb: model(xb).argmax(dim=1)  # noqa: E731 (the shape under test)
    outputs = list(map(model, batches))  # the logits are what is kept here
    return sum(int(predict(xb).sum()) for xb in batches[:1]) + len(outputs)


EVALUATIONS = {
    "helper-list": _evaluate_into_helper_list,
    "summed-floats": _evaluate_summing_floats,
    "object-dict": _evaluate_into_object_dict,
    "closure-map": _evaluate_through_a_closure,
}


def _sampled_run(
    monkeypatch: pytest.MonkeyPatch, evaluate: Any, guarded: bool
) -> tuple[int | None, Any, list[bool]]:
    """Train with an evaluation every EVERY steps from FIRST_EVAL on; the findings after
    each step; (first loop index with a finding, the findings, whether each evaluation's
    step counted saved tensors)."""
    monkeypatch.setattr(sampling, "BUDGET", 1e-9)  # the longest stride, on any machine
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 128), nn.Tanh(), nn.Linear(128, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [torch.randn(32, 16) for _ in range(6)]
    log = _Predictions()
    seen_at = None
    eval_steps = []
    with memwatch(store=False) as mw:
        for i in range(FIRST_EVAL + 3 * EVERY):
            _train_step(model, opt)
            if i >= FIRST_EVAL and (i - FIRST_EVAL) % EVERY == 0:
                eval_steps.append(mw.step_count)  # the step these forwards fall in
                if guarded:
                    with torch.no_grad():
                        evaluate(model, batches, log)
                else:
                    evaluate(model, batches, log)
            if seen_at is None and of_kind(mw.findings, KIND):
                seen_at = i
        counted = {s.step: s.saved_measured for s in mw.steps}
        findings = mw.findings
    return seen_at, findings, [counted[s] for s in eval_steps if s in counted]


@pytest.mark.parametrize("shape", list(EVALUATIONS))
def test_an_evaluation_on_a_step_that_counts_nothing_is_still_reported(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN training with an evaluation pass without no_grad every 7 steps, in train mode,
    #       while sampling counts saved tensors on one step in 64 (the evaluation falls on
    #       a step that counts nothing)
    # WHEN it runs under memwatch in the default mode
    seen_at, findings, counted = _sampled_run(monkeypatch, EVALUATIONS[shape], guarded=False)
    assert counted and not counted[0], "the first evaluation should fall on an uncounted step"
    # THEN the first evaluation is reported within five steps
    assert seen_at is not None and seen_at <= FIRST_EVAL + 5, f"first seen at {seen_at}"
    finding = of_kind(findings, KIND)[0]
    assert finding.severity in ("warning", "error")
    # AND the next evaluations are counted (the first one escalated the sampling), so the
    #     report gives the bytes they saved, never a zero it did not measure
    assert any(counted[1:])
    assert finding.bytes and finding.bytes > 0
    assert "0 B" not in finding.title


@pytest.mark.parametrize("shape", list(EVALUATIONS))
def test_the_same_evaluations_under_no_grad_stay_silent_while_sampling(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the same evaluations under torch.no_grad(), with the same sampling
    # WHEN they run under memwatch
    seen_at, findings, _ = _sampled_run(monkeypatch, EVALUATIONS[shape], guarded=True)
    # THEN nothing is reported
    assert seen_at is None
    assert loop_problems(findings) == []


def test_an_episode_whose_forwards_feed_the_loss_stays_silent_while_sampling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a REINFORCE loop (40 batch-1 forwards, one backward over their log-probs)
    #       while sampling counts saved tensors on one step in 64
    monkeypatch.setattr(sampling, "BUDGET", 1e-9)
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    with memwatch(store=False) as mw:
        for _ in range(40):
            log_probs = [torch.log_softmax(policy(torch.randn(4)), -1)[0] for _ in range(40)]
            loss = -torch.stack(log_probs).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        counted = [s.saved_measured for s in mw.steps[16:]]
    assert not all(counted)  # sampling was on
    # THEN every forward fed the backward: nothing is reported
    assert of_kind(mw.findings, KIND) == []
