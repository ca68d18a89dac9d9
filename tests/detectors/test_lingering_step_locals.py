"""lingering-step-locals: last step's tensors still referenced when the next forward starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis import AnalysisInput
from memwatch.analysis.detectors import lingering_step_locals
from memwatch.records import Event, Finding, Location
from tests.helpers import SAMPLES, kinds, run_sample

KIND = "lingering-step-locals"
SAMPLE = "bugs/lingering_step_locals.py"
MiB = 1 << 20


def line_of(sample: str, text: str) -> int:
    lines = (SAMPLES / sample).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip().startswith(text))


def _lingering(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.kind == KIND]


def test_buggy_sample_names_the_big_output_and_how_much_the_peak_would_drop(
    tmp_path: Path,
) -> None:
    # GIVEN an autoencoder loop whose `recon` (2 MiB) survives into the next step
    # WHEN it runs under memwatch
    run = run_sample(SAMPLE, "--steps", "8", out=tmp_path / "run.db")
    # THEN a finding names `recon` (and `loss`) where `recon` is bound, with the bytes; as
    # info: backward freed the graph, so it is ordinary scoping costing one output
    (finding,) = _lingering(run.findings)
    assert finding.severity == "info"
    assert "at most one step's outputs" in finding.detail
    assert finding.variable == "recon"
    assert finding.location is not None
    assert finding.location.line == line_of(SAMPLE, "recon = model(x)")
    names = [n["name"] for n in finding.evidence["names"]]
    assert names[0] == "recon" and "loss" in names
    assert finding.bytes is not None and finding.bytes >= 2 * MiB
    assert finding.fix.startswith("Add `del recon, loss` at the end of each step")
    assert finding.evidence["peak_reduction_fraction"] >= 0.1


def test_fixed_twin_with_a_step_function_is_clean(tmp_path: Path) -> None:
    # GIVEN the same loop with the step body in a function returning a float
    run = run_sample("bugs/lingering_step_locals_fixed.py", "--steps", "8", out=tmp_path / "run.db")
    # THEN nothing at warning level or above
    assert kinds(run.findings, at_least="warning") == set()


def _train(steps: int, features: int, delete: bool) -> list[Finding]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, features))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(steps):
            x = torch.randn(64, features)
            out = model(x)
            loss = (out - x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if delete:
                del out, loss
    return mw.findings


def test_small_outputs_stay_quiet() -> None:
    # GIVEN an ordinary loop whose outputs are small (64 x 64 floats = 16 KiB)
    # THEN lingering outputs are not worth a warning
    assert _lingering(_train(steps=8, features=64, delete=False)) == []


def test_big_outputs_deleted_at_the_end_of_the_step_stay_quiet() -> None:
    # GIVEN a loop with big outputs (64 x 8192 floats = 2 MiB) deleted after optimizer.step()
    # THEN nothing lingers
    assert _lingering(_train(steps=8, features=8192, delete=True)) == []


def test_big_outputs_kept_until_the_next_forward_are_reported_in_process() -> None:
    # GIVEN the same loop without the del
    findings = _lingering(_train(steps=8, features=8192, delete=False))
    # THEN `out` is reported, as info (its graph is gone: plain scoping, one output)
    assert findings and findings[0].variable == "out"
    assert findings[0].severity == "info"


class _TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)
        self.aux = nn.Sequential(nn.Linear(128, 2048), nn.ReLU())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.head(h), self.aux(h)


def _train_two_heads(aux_in_loss: bool) -> list[Finding]:
    torch.manual_seed(0)
    model = _TwoHeads()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(8):
            x, y = torch.randn(512, 64), torch.randint(0, 10, (512,))
            logits, features = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            if aux_in_loss:
                loss = loss + 1e-3 * features.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return _lingering(mw.findings)


def test_a_lingering_output_whose_branch_no_backward_freed_names_the_graph_bytes() -> None:
    # GIVEN a loop whose model returns an auxiliary output (4 MiB) left out of the loss:
    # backward never reaches its branch, so `features` keeps that branch's saved
    # activations alive through the next step's forward
    findings = _train_two_heads(aux_in_loss=False)
    # THEN `features` is named with the graph bytes it keeps; info: freed at rebinding
    assert [f.severity for f in findings] == ["info"]
    assert findings[0].variable == "features"
    assert findings[0].evidence["graph_saved_bytes"] >= MiB
    assert "saved activations that no backward freed" in findings[0].detail


def test_the_same_output_used_by_the_loss_is_only_info() -> None:
    # GIVEN the same loop with the auxiliary output in the loss (backward frees its graph)
    findings = _train_two_heads(aux_in_loss=True)
    # THEN at most an info: one step's outputs, by plain scoping
    assert [f.severity for f in findings] in ([], ["info"])


# -- the pure detector -----------------------------------------------------------------------
def _event(step: int, occurrences: int, **data: Any) -> Event:
    base: dict[str, Any] = {
        "names": [{"name": "pred", "bytes": 3 * MiB}, {"name": "loss", "bytes": 4}],
        "bytes": 3 * MiB + 4,
        "saved_peak_bytes": 9 * MiB,
        "peak_allocated_bytes": None,
        "function": "train",
        "tensors_from_step": step - 1,
        "occurrences": occurrences,
    }
    base.update(data)
    return Event("lingering-locals", step, 0.0, base, Location("train.py", 30, "train"))


def test_detector_needs_two_steps_before_reporting() -> None:
    # GIVEN one observation only (e.g. the last batch kept for logging), with the previous
    # step's graph (4 MiB of saved activations) alive at the forward
    graph = {"stale_saved_bytes": 4 * MiB}
    one = lingering_step_locals.detect(AnalysisInput(steps=(), events=(_event(1, 1, **graph),)))
    # THEN no finding; WHEN it happens again at the next step, THEN a finding (info)
    two = lingering_step_locals.detect(
        AnalysisInput(steps=(), events=(_event(1, 1, **graph), _event(2, 2, **graph)))
    )
    assert one == []
    (finding,) = two
    assert finding.title == (
        "`pred`, `loss` from the previous step are still alive when the next forward starts "
        "(+3.0 MiB at the peak)"
    )
    assert finding.first_step == 1 and finding.variable == "pred"
    assert finding.severity == "info"
    assert finding.evidence["graph_saved_bytes"] == 4 * MiB
    assert finding.evidence["peak_reduction_fraction"] == round((3 * MiB + 4) / (12 * MiB + 4), 3)


def test_detector_reports_lingering_outputs_without_their_graph_as_info() -> None:
    # GIVEN two steps where `pred` lingers but no saved bytes of earlier steps are alive
    # (an old run file without the field reads the same: the default is 0)
    events = (_event(1, 1), _event(2, 2))
    (finding,) = lingering_step_locals.detect(AnalysisInput(steps=(), events=events))
    # THEN it is info: ordinary scoping, one step's outputs at most
    assert finding.severity == "info"
    assert finding.evidence["graph_saved_bytes"] == 0
