"""``oom-retry-loop``: OOM back-offs that retry with the failed attempt still held."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis import AnalysisInput
from memwatch.analysis.detectors import oom_retry_loop
from memwatch.records import Event, Location
from memwatch.store import RunReader
from tests.helpers import SAMPLES, kinds, only, run_sample

MiB = 1024 * 1024
BUDGET = ("--budget", "16MiB")  # what the samples' docstrings say to use


def line_of(path: Path, text: str) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def events(run_file: Path, kind: str) -> list[Event]:
    with RunReader(run_file) as reader:
        return [e for e in reader.events() if e.kind == kind]


def test_retrying_inside_except_is_reported_with_its_holders(tmp_path: Path) -> None:
    # GIVEN the broken back-off sample under a 16 MiB budget
    run = run_sample("oom/retry_loop_broken.py", out=tmp_path / "r.db", extra=BUDGET)
    # THEN an oom-retry-loop error points at the retry inside `except`
    finding = only(run.findings, "oom-retry-loop")
    sample = SAMPLES / "oom" / "retry_loop_broken.py"
    assert finding.severity == "error"
    assert finding.location is not None
    assert finding.location.file.endswith("retry_loop_broken.py")
    assert finding.location.line == line_of(sample, "return fit(model, optimizer, batch // 2)")
    # AND it names the exception and the failed attempt's variables, with the bytes held
    assert finding.variable == "exc"
    holders = {h["name"]: h for h in finding.evidence["holders"]}
    assert {"exc", "x", "pred", "loss"} <= set(holders)
    assert holders["exc"]["via"] == "exception" and holders["exc"]["handling"] is True
    assert holders["x"]["bytes"] == 2048 * 128 * 4  # the first attempt's input batch
    assert holders["pred"]["graph"] and holders["loss"]["graph"]
    assert finding.evidence["in_except_block"] is True
    # (the whole first attempt minus what its failed backward had already freed)
    assert 8 * MiB < finding.bytes <= finding.evidence["attempt_bytes"]
    assert finding.evidence["pre_attempt_bytes"] < finding.evidence["in_use_at_retry"]
    assert "`exc`" in finding.title and "`pred`" in finding.title
    assert "except" in finding.fix and "del" in finding.fix


def test_leaving_except_and_dropping_the_attempt_is_not_reported(tmp_path: Path) -> None:
    # GIVEN the fixed twin under the same budget
    run = run_sample("oom/retry_loop_fixed.py", out=tmp_path / "r.db", extra=BUDGET)
    # THEN the OOM was recorded and retried, with nothing of the failed attempt left
    assert "oom-retry-loop" not in kinds(run.findings)
    assert sum(s.oom_events for s in run.steps) == 1
    (retry,) = events(tmp_path / "r.db", "oom-retry")
    assert retry.data["held_bytes"] == 0
    assert retry.data["attempt_bytes"] > 8 * MiB
    assert retry.data["exception_alive"] is False
    # AND the retry started back near the level before the failed attempt
    assert retry.data["in_use_bytes"] <= retry.data["pre_attempt_bytes"]


def _step(model: nn.Module, opt: torch.optim.Optimizer, batch: int) -> None:
    x = torch.randn(batch, 64)
    loss = model(x).square().mean()
    loss.backward()
    opt.step()


def test_loop_variables_kept_across_the_retry_are_named() -> None:
    # GIVEN a back-off that leaves `except` but keeps the attempt bound to loop variables
    torch.manual_seed(0)
    with memwatch(budget="6MiB", store=False) as mw:
        model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        batch, hidden, out = 2048, None, None
        while True:
            failed = False
            try:
                hidden = model[1](model[0](torch.randn(batch, 64)))
                out = model[2](hidden)
                out.square().mean().backward()
            except torch.OutOfMemoryError:
                failed = True
            if not failed:
                break
            opt.zero_grad(set_to_none=True)
            batch //= 2  # WHEN it retries with `hidden` from the failed attempt still bound
    # THEN the finding names the loop variable, not an exception
    finding = only(mw.findings, "oom-retry-loop")
    assert finding.variable == "hidden"
    assert finding.evidence["exception_alive"] is False
    assert finding.bytes is not None and finding.bytes >= 1024 * 256 * 4
    assert "del" in finding.fix and "except" not in finding.fix


def test_a_skipped_batch_after_a_clean_oom_is_not_reported() -> None:
    # GIVEN a loop that skips a batch on OOM and drops everything
    torch.manual_seed(0)
    with memwatch(budget="6MiB", store=False) as mw:
        model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for batch in (64, 4096, 64, 64):
            try:
                _step(model, opt, batch)
            except torch.OutOfMemoryError:
                pass
            opt.zero_grad(set_to_none=True)
    # THEN the OOM is recorded, the retry seen healthy, and nothing reported
    assert sum(s.oom_events for s in mw.steps) == 1
    (retry,) = [e for e in mw.events if e.kind == "oom-retry"]
    assert retry.data["held_bytes"] == 0
    assert "oom-retry-loop" not in kinds(mw.findings)


# -- the detector alone, on hand-made events ------------------------------------------------
HERE = Location("train.py", 40, "fit")


def retry_event(step: int = 1, **data: object) -> Event:
    base: dict[str, object] = {
        "oom_index": 1,
        "oom_step": 0,
        "oom_location": "train.py:35",
        "held_bytes": 0,
        "held_exact": True,
        "attempt_bytes": 40 * MiB,
        "pre_attempt_bytes": 10 * MiB,
        "in_use_at_oom": 62 * MiB,
        "in_use_bytes": 11 * MiB,
        "saved_before_attempt": 0,
        "saved_bytes": 0,
        "exception_alive": False,
        "in_except_block": False,
        "holders": [],
    }
    base.update(data)
    return Event("oom-retry", step, 0.0, base, HERE)


def detect(*evts: Event) -> list:
    return oom_retry_loop.detect(AnalysisInput(steps=(), events=evts, final=True))


def test_detector_ignores_a_healthy_back_off() -> None:
    # GIVEN a retry that held nothing of the failed attempt, WHEN judged, THEN no finding
    assert detect(retry_event()) == []


def test_detector_reports_a_retry_holding_a_real_part_of_the_attempt() -> None:
    # GIVEN a retry holding 30 MiB of a 40 MiB attempt through `exc`
    holders = [
        {
            "name": "exc",
            "via": "exception",
            "handling": True,
            "bytes": 8,
            "graph": True,
            "graph_bytes": 24 * MiB,
            "frames_kept": 6,
            "through": [],
        },
        {"name": "x", "via": "local", "function": "fit", "bytes": 6 * MiB, "graph": False},
    ]
    event = retry_event(
        held_bytes=30 * MiB,
        exception_alive=True,
        in_except_block=True,
        in_use_bytes=41 * MiB,
        holders=holders,
    )
    # WHEN judged
    (finding,) = detect(event, retry_event(step=3))
    # THEN one error at the retry site names them, counts the healthy retry, says the fix
    assert (finding.kind, finding.severity, finding.location) == ("oom-retry-loop", "error", HERE)
    assert finding.variable == "exc" and finding.bytes == 30 * MiB
    assert finding.first_step == 0
    assert finding.evidence["healthy_retries"] == 1
    assert "30.0 MiB" in finding.title and "`exc`, `x`" in finding.title
    assert "24.0 MiB are activations saved in the autograd graph" in finding.detail
    assert finding.fix.startswith("Leave the `except` block")


def test_detector_ignores_a_small_remainder() -> None:
    # GIVEN retries holding a sliver (below 64 KiB, or below 10% of the attempt)
    tiny = retry_event(held_bytes=32 * 1024)
    small_share = retry_event(step=2, held_bytes=3 * MiB)
    # WHEN judged, THEN nothing is reported
    assert detect(tiny, small_share) == []


def test_detector_counts_saved_activations_when_identity_is_not_exact() -> None:
    # GIVEN a CUDA-style retry: weakref identity saw 1 MiB, but 20 MiB saved for backward
    # since the attempt started are still alive
    event = retry_event(
        held_bytes=MiB, held_exact=False, saved_before_attempt=0, saved_bytes=20 * MiB
    )
    # WHEN judged, THEN both count as held
    (finding,) = detect(event)
    assert finding.bytes == 21 * MiB


class _Trainer:
    """A trainer object that owns its model and optimizer (OpenNMT-style): the failing
    frame's ``self`` reaches the parameters, which are not part of the failed attempt."""

    def __init__(self) -> None:
        self.model = nn.Sequential(nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 1))
        self.optim = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def forward_backward(self, batch: torch.Tensor) -> None:
        hidden = torch.relu(self.model[0](batch))
        if len(batch) > 256:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 MiB")
        self.model[2](hidden).square().mean().backward()

    def step_retrying_outside_except(self, batch: torch.Tensor) -> None:
        self.optim.zero_grad()
        failed = False
        try:
            self.forward_backward(batch)
        except torch.OutOfMemoryError:
            failed = True
        if failed:
            self.forward_backward(batch[:128])
        self.optim.step()

    def step_retrying_inside_except(self, batch: torch.Tensor) -> None:
        self.optim.zero_grad()
        try:
            self.forward_backward(batch)
        except torch.OutOfMemoryError as exc:
            assert exc is not None
            self.forward_backward(batch[:128])  # the exception keeps `hidden` alive
        self.optim.step()


def test_a_trainer_that_retries_outside_except_is_not_blamed_for_its_model() -> None:
    # GIVEN a trainer object whose failing frame reaches its model and optimizer through
    # `self`, retrying outside the handler, without tensor tracking (the CUDA-like path)
    torch.manual_seed(0)
    trainer = _Trainer()
    with memwatch(store=False) as mw:
        for i in range(12):
            trainer.step_retrying_outside_except(torch.randn(512 if i % 3 == 0 else 64, 64))
    # THEN the OOMs are recorded and nothing is reported: parameters, gradients and Adam
    # state predate the attempt and are not "the failed attempt still held"
    assert sum(s.oom_events for s in mw.steps) == 4
    assert "oom-retry-loop" not in kinds(mw.findings)


def test_the_same_trainer_retrying_inside_except_is_reported() -> None:
    # GIVEN the same trainer retrying inside the handler
    torch.manual_seed(0)
    trainer = _Trainer()
    with memwatch(store=False) as mw:
        for i in range(12):
            trainer.step_retrying_inside_except(torch.randn(512 if i % 3 == 0 else 64, 64))
    # THEN the retry is reported, naming the exception that keeps the attempt alive
    finding = only(mw.findings, "oom-retry-loop")
    assert finding.variable == "exc"
