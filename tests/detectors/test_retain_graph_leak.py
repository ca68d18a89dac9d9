"""retain-graph-leak: `backward(retain_graph=True)` keeping graphs alive step after step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import retain_graph_leak
from tests.detectors.loop_helpers import analysis, at, event, line_of, of_kind, problems, step
from tests.helpers import only, run_sample

KIND = "retain-graph-leak"
SAMPLE = "bugs/retain_graph_leak.py"


def test_buggy_sample_names_loss_at_the_backward_line(tmp_path: Path) -> None:
    # GIVEN a loop that carries an undetached context and silences the resulting error
    #       with loss.backward(retain_graph=True)
    # WHEN it runs under memwatch
    run = run_sample(SAMPLE, "--steps", "12", out=tmp_path / "run.db")
    # THEN the first error is the retain-graph leak, at the backward line, on `loss`
    finding = only(run.findings, KIND)
    assert finding.severity == "error"
    assert finding.variable == "loss"
    line = line_of(SAMPLE, "loss.backward(retain_graph=True)")
    assert at(finding) == ("retain_graph_leak.py", line)
    assert finding.first_step == 0
    assert finding.growth_per_step_bytes and finding.growth_per_step_bytes > 256 * 1024
    assert "retain_graph=True" in finding.fix


def test_fixed_twin_is_clean(tmp_path: Path) -> None:
    # GIVEN the same loop with the context detached and no retain_graph
    run = run_sample("bugs/retain_graph_leak_fixed.py", "--steps", "12", out=tmp_path / "run.db")
    # THEN nothing is reported at warning level or above
    assert problems(run.findings) == []


def _two_heads_step(trunk: nn.Module, heads: list[nn.Module], opt: torch.optim.Optimizer) -> None:
    x = torch.randn(32, 16)
    features = trunk(x)
    loss_a = heads[0](features).pow(2).mean()
    loss_b = heads[1](features).abs().mean()
    opt.zero_grad()
    loss_a.backward(retain_graph=True)  # legit: loss_b's backward goes through the trunk too
    loss_b.backward()
    opt.step()


def test_legit_retain_graph_freed_within_the_step_is_silent() -> None:
    # GIVEN two losses through a shared trunk, the first backward retaining the graph
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(16, 64), nn.ReLU())
    heads = [nn.Linear(64, 1), nn.Linear(64, 1)]
    params = [*trunk.parameters(), *heads[0].parameters(), *heads[1].parameters()]
    opt = torch.optim.SGD(params, lr=0.01)
    # WHEN it trains for a while under a watch
    with memwatch(store=False) as mw:
        for _ in range(16):
            _two_heads_step(trunk, heads, opt)
    # THEN the retained graphs, freed by the step end, raise no alarm
    assert of_kind(mw.findings, KIND) == []
    assert problems(mw.findings) == []


@pytest.mark.parametrize("k", [5, 6, 7, 8])
def test_a_leak_starting_at_step_k_is_reported_by_step_k_plus_5(k: int) -> None:
    # GIVEN a healthy loop that, from step k on, stops detaching its context and adds
    #       retain_graph=True (analysis runs every 4 steps, so several k are tried)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(16, 256), nn.ReLU())
    head = nn.Linear(256, 4)
    opt = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.01)
    context = torch.zeros(32, 256)
    seen_at: int | None = None
    with memwatch(store=False) as mw:
        for i in range(k + 6):
            leaking = i >= k
            features = encoder(torch.randn(32, 16))
            carried = context if i > k else context.detach()  # the chain starts at step k
            context = 0.9 * carried + 0.1 * features
            loss = head(context).pow(2).mean()
            opt.zero_grad()
            loss.backward(retain_graph=leaking)
            opt.step()
            # WHEN we look at the findings after every step
            found = of_kind(mw.findings, KIND)
            if i < k:
                assert found == [], f"false alarm at healthy step {i}"
            elif found and seen_at is None:
                seen_at = i
    # THEN the leak is named within five steps of its start, with the step it began
    assert seen_at is not None and seen_at <= k + 5, f"leak from step {k} seen at {seen_at}"
    finding = of_kind(mw.findings, KIND)[0]
    assert finding.variable == "loss"
    assert finding.first_step is not None and k - 1 <= finding.first_step <= k + 1


# -- pure detector, hand-made evidence --------------------------------------------------------
def _events(stale: list[int], old: list[int]) -> list:
    return [
        event(
            "retain-graph-backward",
            i,
            {
                "calls": 1,
                "stale_bytes": s,
                "old_bytes": o,
                "variable": "loss",
                "function": "backward",
                "saved_before": s + 1000,
            },
        )
        for i, (s, o) in enumerate(zip(stale, old))
    ]


def test_growing_surviving_graphs_are_an_error_with_growth_per_step() -> None:
    # GIVEN retain_graph backwards while bytes saved in earlier steps grow by 1 MiB a step
    mib = 1024 * 1024
    stale = [i * mib for i in range(8)]
    old = [max(0, (i - 1) * mib) for i in range(8)]
    data = analysis([step(i, stale=s) for i, s in enumerate(stale)], _events(stale, old))
    # WHEN the detector judges them
    (finding,) = retain_graph_leak.detect(data)
    # THEN it is an error on `loss` at the call, growing 1 MiB per step since step 0
    assert finding.severity == "error"
    assert finding.variable == "loss"
    assert finding.location is not None and finding.location.line == 10
    assert finding.growth_per_step_bytes == mib
    assert finding.first_step == 0
    assert finding.bytes == 7 * mib


def test_last_step_graph_lagging_one_step_is_not_a_leak() -> None:
    # GIVEN retain_graph every step, the previous step's graph alive (lingering `loss`)
    #       but nothing older: stale flat, old 0
    stale = [0] + [500_000] * 9
    data = analysis([step(i, stale=s) for i, s in enumerate(stale)], _events(stale, [0] * 10))
    # THEN no finding
    assert retain_graph_leak.detect(data) == []


def test_noisy_stale_bytes_without_a_trend_are_not_a_leak() -> None:
    # GIVEN stale bytes that go up and down (batch sizes vary) with some old bytes
    stale = [100, 900, 300, 800, 200, 950, 400, 700, 250, 900]
    old = [0, 0, 50, 50, 0, 60, 0, 40, 0, 30]
    data = analysis([step(i, stale=s) for i, s in enumerate(stale)], _events(stale, old))
    # THEN no finding: the rises are not sustained
    assert retain_graph_leak.detect(data) == []


def test_without_retain_graph_backwards_nothing_is_judged() -> None:
    # GIVEN growing stale bytes but no retain_graph backward at all (another kind's case)
    steps = [step(i, stale=i * 1000) for i in range(10)]
    # THEN this detector stays out of it
    assert retain_graph_leak.detect(analysis(steps, [])) == []
