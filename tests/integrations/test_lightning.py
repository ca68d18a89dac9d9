"""memwatch.integrations.lightning.MemwatchCallback against the real Lightning package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

L = pytest.importorskip("lightning")

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from memwatch.commands.common import load_run  # noqa: E402
from memwatch.integrations.lightning import MemwatchCallback  # noqa: E402
from memwatch.store import RunReader  # noqa: E402
from tests.integrations.helpers import above_info, logged, phases  # noqa: E402

LOGGER = "lightning.pytorch.callbacks.memwatch"


class TinyModule(L.LightningModule):  # type: ignore[misc]
    def __init__(self, leak: bool = False) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)
        )
        self.leak = leak
        self.losses: list[torch.Tensor] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        if self.leak:
            self.losses.append(loss)  # the planted leak: every step's graph stays alive
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def _loader() -> DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(512, 16, generator=g), torch.randn(512, 1, generator=g))
    return DataLoader(data, batch_size=16)


def _trainer(callback: MemwatchCallback, max_steps: int = 12, **kw: Any) -> Any:
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=2,
        callbacks=[callback],
        **kw,
    )


def test_clean_fit_with_accumulation_steps_by_global_step_and_finds_nothing(
    tmp_path: Path,
) -> None:
    # GIVEN a correct LightningModule trained with automatic optimization (Lightning's
    #       closure: zero_grad, forward, backward inside optimizer.step), gradient
    #       accumulation over 2 batches and a validation pass in the middle of the epoch
    out = tmp_path / "fit.db"
    model = TinyModule()
    trainer = _trainer(
        MemwatchCallback(out=out, report=False), accumulate_grad_batches=2, val_check_interval=8
    )
    with logged(LOGGER) as lines:
        trainer.fit(model, _loader(), _loader())
    # THEN one memwatch step per optimizer step (12 global steps from 24 batches; the
    #      teardown closes what ran after the last one), nothing above info, no log line
    run = load_run(out)
    optimizer_steps = [s for s in run.steps if s.boundary == "manual"]
    assert len(optimizer_steps) == trainer.global_step == 12
    assert all(s.backward_calls == 2 for s in optimizer_steps)  # two micro-batches each
    assert above_info(run.findings) == []
    assert not [line for line in lines if "WARNING" in line or "ERROR" in line]
    # AND the phases Lightning went through are in the run file, in order
    seen = phases(out)
    assert seen[:3] == [("sanity_check", "start"), ("sanity_check", "end"), ("train", "start")]
    assert ("validation", "start") in seen and ("validation", "end") in seen
    assert seen[seen.index(("validation", "end")) + 1] == ("train", "start")


def test_loss_appended_in_training_step_is_named_in_the_log(tmp_path: Path) -> None:
    # GIVEN training_step appends the loss (with its graph) to self.losses
    out = tmp_path / "leak.db"
    model = TinyModule(leak=True)
    with logged(LOGGER) as lines:
        _trainer(MemwatchCallback(out=out, report=False), max_steps=16).fit(model, _loader())
    # THEN graph-accumulation names `model.losses` at the append, in the run and in
    #      Lightning's log while training ran
    run = load_run(out)
    (finding,) = [f for f in run.findings if f.kind == "graph-accumulation"]
    assert finding.variable == "model.losses"
    assert finding.location is not None and finding.location.function == "training_step"
    assert any("graph-accumulation" in line and "model.losses" in line for line in lines)


def test_test_stage_counts_one_step_per_batch(tmp_path: Path) -> None:
    # GIVEN trainer.test (no optimizer step at all)
    out = tmp_path / "test.db"
    trainer = _trainer(MemwatchCallback(out=out, report=False), limit_test_batches=5)
    trainer.test(TinyModule(), _loader())
    # THEN each test batch is a step, inside a test phase, and nothing is flagged
    run = load_run(out)
    assert len([s for s in run.steps if s.boundary == "manual"]) == 5
    assert phases(out) == [("test", "start"), ("test", "end")]
    assert above_info(run.findings) == []


def test_report_comes_out_at_the_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the callback with its defaults but a run file path
    out = tmp_path / "r.db"
    _trainer(MemwatchCallback(out=out), max_steps=4).fit(TinyModule(), _loader())
    # THEN the text report and the run file's path are printed on stderr at the end
    err = capsys.readouterr().err
    assert "memwatch: " in err and "no memory problems found" in err
    assert str(out) in err
    with RunReader(out) as reader:
        assert reader.info().ended_at is not None


def test_validation_inside_the_epoch_is_no_grad_reset(tmp_path: Path) -> None:
    # GIVEN automatic optimization without accumulation and a validation pass every 6
    #       batches: Lightning zeroes the gradients before validating
    #       (on_validation_model_zero_grad), after the step that used them (issue 12: this
    #       was reported as an ERROR grad-reset-before-step)
    out = tmp_path / "val.db"
    trainer = _trainer(MemwatchCallback(out=out, report=False), val_check_interval=6)
    trainer.fit(TinyModule(), _loader(), _loader())
    # THEN no finding above info
    assert above_info(load_run(out).findings) == []


class PredictionCollector(L.Callback):  # type: ignore[misc]
    """A user callback keeping each training batch's predictions for an epoch-end metric
    (Lightning-AI/pytorch-lightning#8583: the non-loss outputs come through un-detached)."""

    def __init__(self, detach: bool) -> None:
        self.detach = detach
        self.preds: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, *args: Any) -> None:
        preds = outputs["preds"]
        self.preds.append(preds.detach().mean() if self.detach else preds)


class PredictingModule(TinyModule):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        preds = self.net(x)
        return {"loss": torch.nn.functional.mse_loss(preds, y), "preds": preds}


@pytest.mark.parametrize("detach", [False, True])
def test_a_user_callback_keeping_predictions_is_named_through_the_trainer(
    tmp_path: Path, detach: bool
) -> None:
    # GIVEN a user Callback appending every batch's predictions, held by trainer.callbacks
    #       only (no variable of the script names it), and a module created inline
    out = tmp_path / "run.db"
    trainer = _trainer(MemwatchCallback(out=out, report=False), max_steps=16)
    trainer.callbacks.append(PredictionCollector(detach))
    trainer.fit(PredictingModule(), _loader())
    findings = load_run(out).findings
    if detach:
        # THEN the detached scalars are silent
        assert above_info(findings) == []
    else:
        # THEN the kept graphs are named as the callback's attribute, not the trainer's list
        (finding,) = [f for f in findings if f.kind == "graph-accumulation"]
        assert finding.variable == "self.preds"
