"""memory-growth: tensor memory grows steadily across steps (not through autograd graphs)."""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis import AnalysisInput
from memwatch.analysis.detectors import memory_growth
from memwatch.evidence import GraphAccumulation, HolderGrowth
from memwatch.records import Event, Finding, Location, RunInfo, StepRecord
from tests.helpers import SAMPLES, kinds, run_sample
from tests.records import make_step

KIND = "memory-growth"
SAMPLE = "bugs/memory_growth.py"
KiB, MiB = 1 << 10, 1 << 20


def line_of(sample: str, text: str) -> int:
    lines = (SAMPLES / sample).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip().startswith(text))


def _growth(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.kind == KIND]


def test_buggy_sample_names_the_global_list_at_the_hook_append(tmp_path: Path) -> None:
    # GIVEN a forward hook appending a 256 KiB activation to a module-level list each step
    # WHEN it runs under memwatch
    run = run_sample(SAMPLE, "--steps", "12", out=tmp_path / "run.db")
    # THEN a memory-growth warning names the list, at the append inside the hook
    (finding,) = _growth(run.findings)
    assert finding.severity == "warning"
    assert finding.variable == "ACTIVATIONS"
    assert finding.location is not None
    assert finding.location.function == "keep_features"
    assert finding.location.line == line_of(SAMPLE, "ACTIVATIONS.append(output.detach())")
    assert finding.growth_per_step_bytes == 256 * KiB
    assert "deque(maxlen=N)" in finding.fix


def test_fixed_twin_and_its_one_time_best_model_copy_are_clean(tmp_path: Path) -> None:
    # GIVEN the hook keeping only the latest activation, and a one-time deepcopy of the model
    run = run_sample("bugs/memory_growth_fixed.py", "--steps", "12", out=tmp_path / "run.db")
    # THEN nothing at warning level or above
    assert kinds(run.findings, at_least="warning") == set()


class CachingModel(nn.Module):
    """Caches every input's features by key, detached: plain growth, no graph."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 256)
        self.features: dict[int, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, key: int) -> torch.Tensor:
        out = self.fc(x)
        self.features[key] = out.detach()
        return out


def test_a_module_cache_starting_late_is_reported_within_five_steps_at_its_store() -> None:
    # GIVEN a model that starts caching 64 KiB of features per step at step 6
    torch.manual_seed(0)
    model = CachingModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    reported_at = None
    with memwatch(store=False) as mw:
        for step in range(16):
            out = model(torch.randn(64, 64), key=step if step >= 6 else 0)
            loss = out.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            # WHEN we look after each step
            if reported_at is None and _growth(mw.findings):
                reported_at = step
    # THEN the growth is reported by step 11, on the module attribute, at its store
    assert reported_at is not None and reported_at <= 6 + 5
    finding = _growth(mw.findings)[0]
    assert finding.variable == "model.features"
    assert finding.first_step == 6
    assert finding.location is not None and finding.location.function == "forward"
    assert finding.evidence["statement"] == "self.features[key] = out.detach()"


def test_bounded_window_best_model_copy_and_varying_batches_are_silent() -> None:
    # GIVEN a loop with a deque(maxlen=4) of outputs, a best-model copy taken twice and
    #       batches whose size varies up and down
    torch.manual_seed(0)
    model = nn.Linear(64, 2048)  # outputs of 0.25 to 1.75 MiB
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    recent: deque[torch.Tensor] = deque(maxlen=4)
    with memwatch(store=False) as mw:
        best_model = None
        for step in range(24):
            x = torch.randn(32 + 96 * (step % 3), 64)
            out = model(x)
            recent.append(out.detach())
            out.pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            if step in (2, 9):
                best_model = copy.deepcopy(model)
    # THEN no memory growth is reported
    assert _growth(mw.findings) == []
    assert best_model is not None


# -- the pure detector -----------------------------------------------------------------------
def _holder_event(step: int, grew_at: int | None = None, **fields: Any) -> Event:
    """A holder measured at ``step`` that last grew at ``grew_at`` (default: this step)."""
    measured = HolderGrowth(
        holder="ACTIVATIONS",
        scope="global",
        kind="container",
        bytes=(step + 1) * 256 * KiB,
        max_bytes=(step + 1) * 256 * KiB,
        start_bytes=256 * KiB,
        tensors=step + 1,
        length=step + 1,
        first_step=1,
        growth_per_step_bytes=256 * KiB,
        last_growth_step=step if grew_at is None else grew_at,
        statement="ACTIVATIONS.append(output.detach())",
        pattern="store",
    )
    return replace(measured, **fields).event(step, Location("train.py", 12, "hook"), at=0.0)


def _step(step: int, allocated: int | None, stale: int = 0) -> StepRecord:
    return make_step(
        step,
        started_at=0.0,
        allocated_bytes=allocated,
        reserved_bytes=allocated,
        peak_allocated_bytes=allocated,
        saved_stale_bytes=stale,
        rss_bytes=None,
    )


def _cuda() -> RunInfo:
    return RunInfo("r", "train.py", (), 0.0, "3.11", "2.13", "cuda", "H100", 80 << 30, 1, "h")


def _detect(steps: list[StepRecord], events: list[Event]) -> list[Finding]:
    return memory_growth.detect(AnalysisInput(steps=steps, events=events, info=_cuda()))


def test_detector_reports_a_growing_holder_and_drops_it_once_it_stopped() -> None:
    # GIVEN a holder confirmed growing
    growing = _detect([], [_holder_event(3)])
    # THEN a warning with its growth; WHEN its latest measurement shows no growth for
    # eight steps (it was bounded)
    stopped = _detect([], [_holder_event(3), _holder_event(20, grew_at=12)])
    # THEN nothing
    (finding,) = growing
    assert finding.title == "`ACTIVATIONS` grows by 256.0 KiB/step since step 1 (now 1.0 MiB)"
    assert finding.growth_per_step_bytes == 256 * KiB
    assert stopped == []


def test_detector_makes_big_growth_an_error() -> None:
    (finding,) = _detect([], [_holder_event(3, growth_per_step_bytes=32 * MiB)])
    assert finding.severity == "error"


def test_detector_leaves_holders_with_graphs_to_graph_accumulation() -> None:
    graph = GraphAccumulation(variable="ACTIVATIONS", holder="x", hit_streak=2).event(3, at=0.0)
    assert _detect([], [_holder_event(3), graph]) == []


def test_detector_reports_unexplained_device_growth_without_a_location() -> None:
    # GIVEN allocated memory rising ~1 MiB per step after warm-up, with small noise
    steps = [_step(i, 100 * MiB + i * MiB + (i % 2) * 4 * KiB) for i in range(16)]
    # WHEN no holder explains it
    (finding,) = _detect(steps, [])
    # THEN a finding with no location, saying so
    assert finding.location is None and finding.variable is None
    assert finding.growth_per_step_bytes is not None
    assert abs(finding.growth_per_step_bytes - MiB) < 64 * KiB
    assert "no named holder" in finding.title


def test_detector_ignores_a_one_time_jump_noise_and_stale_saved_growth() -> None:
    # GIVEN a best-model copy (one 200 MiB jump) then flat memory with noise
    jump = [_step(i, 100 * MiB + (200 * MiB if i >= 8 else 0) + (i % 3) * KiB) for i in range(20)]
    # AND growth that autograd-saved tensors kept across steps explain (graph detectors' case)
    saved = [_step(i, 100 * MiB + i * MiB, stale=i * MiB) for i in range(16)]
    # THEN neither is reported as memory-growth
    assert _detect(jump, []) == []
    assert _detect(saved, []) == []


def test_detector_does_not_double_report_device_growth_a_holder_explains() -> None:
    steps = [_step(i, 100 * MiB + i * 256 * KiB) for i in range(16)]
    findings = _detect(steps, [_holder_event(10)])
    assert [f.variable for f in findings] == ["ACTIVATIONS"]


def test_a_growing_dict_and_its_growing_key_are_one_finding_on_the_key() -> None:
    # GIVEN the scan measuring `logger.stats` and the census `logger.stats['q']`, both growing
    events = [
        _holder_event(10, holder="logger.stats"),
        _holder_event(10, holder="logger.stats['q']"),
    ]
    # THEN one finding, on the item that grows
    (finding,) = _detect([], events)
    assert finding.variable == "logger.stats['q']"


def test_a_stepwise_holder_is_still_growing_between_its_rises() -> None:
    # GIVEN a holder that grows every 10 steps, last seen growing 12 steps ago
    events = [_holder_event(30, grew_at=18, period_steps=10, rises=3)]
    # THEN it is still growing (two periods have not passed), said per 10 steps
    (finding,) = _detect([], events)
    assert "every 10 steps" in finding.title


def test_a_list_filling_up_again_after_being_emptied_is_not_growth() -> None:
    # GIVEN a per-epoch list emptied at 1.25 MiB, now at 1 MiB again and growing
    events = [_holder_event(3, cycle_peak_bytes=1280 * KiB, bytes=1024 * KiB, max_bytes=1280 * KiB)]
    # THEN no finding: it is bounded by its earlier peak
    assert _detect([], events) == []
