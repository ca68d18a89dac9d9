"""cudnn-benchmark-dynamic-shapes: cudnn.benchmark on while conv input shapes keep changing."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import cudnn_benchmark_dynamic_shapes as detector
from tests.detectors.loop_helpers import (
    analysis,
    at,
    cudnn_benchmark_restored,
    event,
    line_of,
    of_kind,
    problems,
    step,
)
from tests.helpers import only, run_sample

KIND = "cudnn-benchmark-dynamic-shapes"
SAMPLE = "bugs/cudnn_benchmark_dynamic_shapes.py"


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def _train(model: nn.Module, sizes: list[int]) -> list:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for size in sizes:
            loss = model(torch.randn(2, 3, size, size)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return mw.findings


def test_buggy_sample_names_the_model_at_its_call(tmp_path: Path) -> None:
    # GIVEN cudnn.benchmark on and images of a random size every step
    with cudnn_benchmark_restored():
        # WHEN it runs under memwatch (on CPU: the flag and shapes are still visible)
        run = run_sample(SAMPLE, "--steps", "16", out=tmp_path / "run.db")
    # THEN a warning names `model` where it is called
    finding = only(run.findings, KIND)
    assert finding.severity == "warning"
    assert finding.variable == "model"
    assert at(finding) == ("cudnn_benchmark_dynamic_shapes.py", line_of(SAMPLE, "loss = loss_fn("))
    assert finding.evidence["distinct_shapes"] >= 8
    assert "benchmark = False" in finding.fix


def test_fixed_twin_is_clean(tmp_path: Path) -> None:
    # GIVEN the same images padded to one size, benchmark still on
    with cudnn_benchmark_restored():
        run = run_sample(
            "bugs/cudnn_benchmark_dynamic_shapes_fixed.py", "--steps", "16", out=tmp_path / "run.db"
        )
    # THEN nothing at warning level or above
    assert problems(run.findings) == []


def test_a_few_shape_buckets_are_silent() -> None:
    # GIVEN benchmark on and inputs bucketed to three sizes
    with cudnn_benchmark_restored():
        torch.backends.cudnn.benchmark = True
        findings = _train(_convnet(), [16, 24, 32] * 6)
    # THEN three tunings are fine: no warning
    assert of_kind(findings, KIND) == []


def test_dynamic_shapes_with_benchmark_off_are_silent() -> None:
    # GIVEN free-size inputs but benchmark off
    with cudnn_benchmark_restored():
        torch.backends.cudnn.benchmark = False
        findings = _train(_convnet(), list(range(8, 26)))
    # THEN nothing to say
    assert of_kind(findings, KIND) == []


def test_free_shapes_with_benchmark_on_are_reported_in_process() -> None:
    # GIVEN benchmark on and a new size every step
    with cudnn_benchmark_restored():
        torch.backends.cudnn.benchmark = True
        findings = _train(_convnet(), list(range(8, 26)))
    # THEN the warning counts the distinct shapes
    (finding,) = of_kind(findings, KIND)
    assert finding.evidence["distinct_shapes"] == 18


class _TextCNN(nn.Module):
    """Token ids (batch, length) -> embedding -> Conv1d: the conv input shape follows the
    text length, though the model's own input is 2-D (ColossalAI PR #1063)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.conv = nn.Conv1d(8, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.embed(ids).transpose(1, 2)).amax(-1)
        return self.head(h)


def test_text_of_every_length_with_benchmark_on_is_reported() -> None:
    # GIVEN benchmark on and a text CNN fed token ids of a new length every step
    torch.manual_seed(0)
    model = _TextCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with cudnn_benchmark_restored():
        torch.backends.cudnn.benchmark = True
        with memwatch(store=False) as mw:
            for length in range(8, 26):
                loss = model(torch.randint(0, 50, (2, length))).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
    # THEN the 2-D inputs' shapes count: a warning with the distinct lengths
    (finding,) = of_kind(mw.findings, KIND)
    assert finding.evidence["distinct_shapes"] == 18


# -- pure detector, hand-made evidence --------------------------------------------------------
def _shapes(n: int, distinct: int) -> object:
    return event(
        "conv-input-shapes",
        n,
        {"new": 1, "distinct": distinct, "examples": [[8, 3, n, n]], "variable": "net"},
    )


def test_new_shapes_in_most_steps_fire() -> None:
    events = [_shapes(i, i + 1) for i in range(10)]
    (finding,) = detector.detect(analysis([step(i) for i in range(10)], events))
    assert finding.variable == "net"
    assert finding.evidence["steps_with_new_shapes"] == 10


def test_progressive_resizing_is_silent() -> None:
    # GIVEN 10 sizes, a new one every 50 steps (progressive resizing), over 500 steps
    events = [_shapes(50 * i, i + 1) for i in range(10)]
    steps = [step(i) for i in range(500)]
    # THEN new shapes are too rare to be "dynamic"
    assert detector.detect(analysis(steps, events)) == []
