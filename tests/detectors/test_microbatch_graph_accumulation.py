"""microbatch-graph-accumulation: micro-batch losses summed before one backward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import microbatch_graph_accumulation as detector
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

KIND = "microbatch-graph-accumulation"
SAMPLE = "bugs/microbatch_graph_accumulation.py"


def test_buggy_sample_names_the_summed_loss_at_its_backward(tmp_path: Path) -> None:
    # GIVEN 4 micro-batch losses summed into `total`, then one total.backward()
    # WHEN it runs under memwatch
    run = run_sample(SAMPLE, "--steps", "6", out=tmp_path / "run.db")
    # THEN a warning names `total` at the backward line, with the graphs' bytes
    finding = only(run.findings, KIND)
    assert finding.severity == "warning"
    assert finding.variable == "total"
    assert at(finding) == ("microbatch_graph_accumulation.py", line_of(SAMPLE, "total.backward()"))
    assert finding.evidence["forwards_per_backward"] == 4
    assert finding.bytes and finding.bytes >= 4 * finding.evidence["forward_bytes"] * 0.9
    assert "(loss / n).backward()" in finding.fix


def test_fixed_twin_is_clean(tmp_path: Path) -> None:
    # GIVEN one backward per micro-batch
    run = run_sample(
        "bugs/microbatch_graph_accumulation_fixed.py", "--steps", "6", out=tmp_path / "run.db"
    )
    # THEN nothing at warning level or above
    assert problems(run.findings) == []


def test_a_triplet_loss_coupling_three_forwards_is_silent() -> None:
    # GIVEN a triplet loss: anchor, positive and negative forwards, one loss coupling them
    torch.manual_seed(0)
    embed = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 8))
    opt = torch.optim.SGD(embed.parameters(), lr=0.01)
    triplet = nn.TripletMarginLoss()
    with memwatch(store=False) as mw:
        for _ in range(8):
            a, p, n = (embed(torch.randn(32, 16)) for _ in range(3))
            loss = triplet(a, p, n)
            opt.zero_grad()
            loss.backward()
            opt.step()
    # THEN it is not taken for summed micro-batches (one backward per forward is impossible)
    assert of_kind(mw.findings, KIND) == []
    assert loop_problems(mw.findings) == []


def test_a_gan_discriminator_on_real_and_fake_is_silent() -> None:
    # GIVEN a discriminator step on a real and a fake batch, both losses summed (two forwards)
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Linear(16, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    opt = torch.optim.SGD(disc.parameters(), lr=0.01)
    bce = nn.BCEWithLogitsLoss()
    with memwatch(store=False) as mw:
        for _ in range(8):
            real, fake = torch.randn(32, 16), torch.randn(32, 16) * 2
            loss = bce(disc(real), torch.ones(32, 1)) + bce(disc(fake), torch.zeros(32, 1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    # THEN two graphs at once are not reported (the usual, cheap pattern)
    assert loop_problems(mw.findings) == []


# -- pure detector, hand-made evidence --------------------------------------------------------
def _mb(n: int) -> object:
    return event(
        "microbatch-backward",
        n,
        {
            "forwards": 4,
            "branches": 4,
            "forward_bytes": 1000,
            "graphs_bytes": 4000,
            "saved_before": 4100,
            "backwards": 1,
            "variable": "total",
        },
    )


def test_repeated_summed_backwards_are_a_warning_with_the_graph_bytes() -> None:
    (finding,) = detector.detect(analysis([step(i) for i in range(4)], [_mb(1), _mb(2)]))
    assert finding.variable == "total"
    assert finding.bytes == 4000
    assert finding.first_step == 1


def test_a_single_occurrence_waits_for_the_final_pass() -> None:
    # GIVEN one summed backward seen so far
    steps = [step(i) for i in range(4)]
    # THEN a live pass does not report it yet, the final pass (whole run) does
    assert detector.detect(analysis(steps, [_mb(2)], final=False)) == []
    assert len(detector.detect(analysis(steps, [_mb(2)], final=True))) == 1


def test_micro_batches_starting_on_steps_that_count_nothing_record_no_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN one forward per step for 20 steps, then 4 micro-batch losses summed before one
    #       backward, while sampling counts saved tensors on one step in 64 (the summing
    #       starts on steps that count nothing; whether the graphs were all alive at once
    #       is a measurement only a counted step makes)
    monkeypatch.setattr(sampling, "BUDGET", 1e-9)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for i in range(90):
            parts = 4 if i >= 20 else 1
            total = sum(model(torch.randn(16, 16)).pow(2).mean() for _ in range(parts))
            opt.zero_grad()
            total.backward()
            opt.step()
        counted = {s.step for s in mw.steps if s.saved_measured}
        events = [e for e in mw.events if e.kind == "microbatch-backward"]
    # THEN micro-batch sizes are recorded only on steps that counted them (never a 0 B
    #      graph read off a step that counted nothing), and the sum is reported once a
    #      counted step has measured it
    assert events and all(e.step in counted for e in events)
    assert all(e.data["graphs_bytes"] > 0 for e in events)
    assert of_kind(mw.findings, KIND)
