"""unbatched-forward: the model is called many times per step on single samples."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import unbatched_forward as detector
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

KIND = "unbatched-forward"
SAMPLE = "bugs/unbatched_forward.py"


def test_buggy_sample_names_the_model_at_the_per_sample_call(tmp_path: Path) -> None:
    # GIVEN a loop calling the model on each row of the batch
    # WHEN it runs under memwatch
    run = run_sample(SAMPLE, "--steps", "4", out=tmp_path / "run.db")
    # THEN a warning names `model` at the per-sample call, 32 calls per step
    finding = only(run.findings, KIND)
    assert finding.severity == "warning"
    assert finding.variable == "model"
    line = line_of(SAMPLE, "loss = torch.stack([loss_fn(model(x)")
    assert at(finding) == ("unbatched_forward.py", line)
    assert finding.evidence["calls_per_step"] == 32
    assert "one batch" in finding.fix


def test_fixed_twin_is_clean(tmp_path: Path) -> None:
    # GIVEN one call on the whole batch
    run = run_sample("bugs/unbatched_forward_fixed.py", "--steps", "4", out=tmp_path / "run.db")
    # THEN nothing at warning level or above
    assert problems(run.findings) == []


def test_fresh_single_observations_from_an_environment_are_silent() -> None:
    # GIVEN a policy acting step by step on fresh observations (can't be batched), trained
    #       once per episode
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = torch.optim.SGD(policy.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(4):
            log_probs = []
            for _ in range(20):
                obs = torch.randn(1, 4)  # batch of one, a new tensor each time
                log_probs.append(policy(obs).log_softmax(-1)[0, 0])
            loss = -torch.stack(log_probs).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    # THEN it is not called unbatched (nor anything else of the loop kinds)
    assert of_kind(mw.findings, KIND) == []
    assert loop_problems(mw.findings) == []


def _train_on_images(images_per_step, model: nn.Module, steps: int = 4):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for i in range(steps):
            loss = images_per_step(i, model)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return mw


def _conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_images_of_different_sizes_from_one_list_are_a_warning() -> None:
    # GIVEN images of different sizes in a list, each run on its own (mmdetection#932)
    def step_loss(i: int, model: nn.Module) -> torch.Tensor:
        imgs = [torch.randn(3, 16 + 4 * (j % 3), 16) for j in range(12)]
        loss = torch.zeros(())
        for img in imgs:
            loss = loss + model(img.unsqueeze(0)).square().mean()
        return loss

    # WHEN it trains under memwatch
    mw = _train_on_images(step_loss, _conv_net())
    # THEN the per-image forward is a warning: the samples were already together
    finding = only(mw.findings, KIND)
    assert finding.evidence["elements_of_one_list"] >= 2


def test_pairs_from_a_list_of_samples_are_a_warning() -> None:
    # GIVEN a list of (image, label) pairs looped over one by one, a different holder shape
    def step_loss(i: int, model: nn.Module) -> torch.Tensor:
        samples = [(torch.randn(1, 3, 16, 16), j % 2) for j in range(10)]
        losses = [model(x)[0, y] for x, y in samples]
        return torch.stack(losses).sum()

    mw = _train_on_images(step_loss, _conv_net())
    # THEN it is reported too
    only(mw.findings, KIND)


def test_a_rollout_that_appends_each_state_before_acting_is_silent() -> None:
    # GIVEN a policy whose state comes from its last action, appended to a list before acting
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4))
    opt = torch.optim.SGD(policy.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(4):
            states: list[torch.Tensor] = []
            outputs = []
            state = torch.randn(1, 4)
            for _ in range(20):
                states.append(state)
                out = policy(state)
                outputs.append(out.sum())
                state = out.detach().tanh()
            loss = torch.stack(outputs).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    # THEN it is not called unbatched: each input exists only after the previous forward
    assert of_kind(mw.findings, KIND) == []


# -- pure detector, hand-made evidence --------------------------------------------------------
def _ub(n: int, calls: int = 16, forwards: int = 16, shared: int = 15) -> object:
    return event(
        "unbatched-forwards",
        n,
        {
            "calls": calls,
            "forwards": forwards,
            "same_base": shared,
            "shape": [64],
            "model": "MLP",
            "variable": "net",
        },
    )


def test_rows_of_one_batch_one_by_one_are_a_warning() -> None:
    (finding,) = detector.detect(analysis([step(i) for i in range(3)], [_ub(1), _ub(2)]))
    assert finding.variable == "net"
    assert finding.evidence["calls_per_step"] == 16
    assert finding.fix.startswith("Stack the samples into one batch")


def test_few_single_sample_calls_are_silent() -> None:
    # GIVEN 5 single-sample calls per step (a handful of probes, not the training batch)
    events = [_ub(i, calls=5, forwards=5, shared=4) for i in range(6)]
    assert detector.detect(analysis([step(i) for i in range(6)], events)) == []


def test_single_sample_calls_mixed_with_batched_ones_are_silent() -> None:
    # GIVEN 10 single-sample calls among 40 forwards per step
    events = [_ub(i, calls=10, forwards=40, shared=9) for i in range(6)]
    assert detector.detect(analysis([step(i) for i in range(6)], events)) == []
