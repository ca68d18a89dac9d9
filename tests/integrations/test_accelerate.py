"""memwatch.integrations.accelerate.watch_accelerator around a real accelerate loop."""

from __future__ import annotations

from pathlib import Path

import pytest

accelerate = pytest.importorskip("accelerate")

import torch  # noqa: E402

from memwatch.commands.common import load_run  # noqa: E402
from memwatch.integrations.accelerate import watch_accelerator  # noqa: E402
from tests.integrations.helpers import above_info  # noqa: E402


def _train(
    out: Path, keep: list[torch.Tensor] | None, batches: int = 24, zero_first: bool = False
) -> int:
    """An accelerate loop with 2-batch accumulation; returns the optimizer steps taken."""
    torch.manual_seed(0)
    accelerator = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=2)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.utils.data.TensorDataset(torch.randn(batches * 8, 16), torch.randn(batches * 8, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    updates = 0
    with watch_accelerator(accelerator, out=out, report=False):
        for x, y in loader:
            with accelerator.accumulate(model):
                if zero_first:
                    optimizer.zero_grad()  # the planted bug: wipes the accumulated batch
                loss = torch.nn.functional.mse_loss(model(x), y)
                accelerator.backward(loss)
                if keep is not None:
                    keep.append(loss)  # the planted leak
                optimizer.step()
                optimizer.zero_grad()
                updates += int(accelerator.sync_gradients)
    return updates


def test_clean_loop_has_one_step_per_update_and_no_finding(tmp_path: Path) -> None:
    # GIVEN a correct accelerate loop with gradient accumulation over 2 batches
    updates = _train(tmp_path / "acc.db", keep=None)
    # THEN memwatch's steps are the optimizer updates (12 from 24 batches), no finding
    run = load_run(tmp_path / "acc.db")
    assert updates == 12
    assert len([s for s in run.steps if s.boundary == "optimizer"]) == updates
    assert above_info(run.findings) == []


def test_losses_kept_with_their_graphs_are_named(tmp_path: Path) -> None:
    # GIVEN the loop keeps every loss (with its graph) in a list
    losses: list[torch.Tensor] = []
    _train(tmp_path / "leak.db", keep=losses)
    # THEN graph-accumulation names the list
    run = load_run(tmp_path / "leak.db")
    (finding,) = [f for f in run.findings if f.kind == "graph-accumulation"]
    assert finding.variable == "keep"


def test_zero_grad_first_inside_accumulate_is_named(tmp_path: Path) -> None:
    # GIVEN optimizer.zero_grad() first inside accelerator.accumulate(): accelerate's
    #       wrapped optimizer zeroes only on the sync micro-batch, before its backward
    _train(tmp_path / "zero.db", keep=None, zero_first=True)
    # THEN grad-reset-before-step names the optimizer: one of two passes discarded
    run = load_run(tmp_path / "zero.db")
    (finding,) = [f for f in run.findings if f.kind == "grad-reset-before-step"]
    assert finding.variable == "optimizer"
    assert (finding.evidence["passes_discarded"], finding.evidence["passes_kept"]) == (1, 1)
    assert [line.split(":")[0] for line in above_info(run.findings)] == ["grad-reset-before-step"]
