"""memwatch.integrations.transformers.MemwatchCallback against the real transformers Trainer.

The model is a one-layer GPT-2 built from a config (no hub access: HF_HUB_OFFLINE=1),
trained on random token ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # the Trainer needs it

import torch  # noqa: E402

from memwatch.commands.common import load_run  # noqa: E402
from memwatch.integrations.transformers import MemwatchCallback  # noqa: E402
from tests.integrations.helpers import above_info, logged, phases  # noqa: E402

LOGGER = "transformers.trainer.memwatch"


class Tokens(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, n: int) -> None:
        self.ids = torch.randint(0, 64, (n, 16), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _trainer(tmp_path: Path, callback: MemwatchCallback, **kw: Any) -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=64,
        n_positions=16,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=kw.pop("max_steps", 8),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        gradient_accumulation_steps=2,
        eval_strategy="steps",
        eval_steps=kw.pop("eval_steps", 4),
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    return transformers.Trainer(
        model=transformers.GPT2LMHeadModel(config),
        args=args,
        train_dataset=Tokens(64),
        eval_dataset=Tokens(kw.pop("eval_samples", 8)),
        callbacks=[callback],
        **kw,
    )


def test_clean_training_steps_by_global_step_and_finds_nothing(tmp_path: Path) -> None:
    # GIVEN a correct Trainer run: 8 optimizer steps of 2 accumulated micro-batches, an
    #       evaluation every 4 steps
    out = tmp_path / "hf.db"
    trainer = _trainer(tmp_path, MemwatchCallback(out=out, report=False))
    with logged(LOGGER) as lines:
        trainer.train()
    # THEN one memwatch step per optimizer step, two backward passes in each, nothing
    #      above info, nothing logged at warning level
    run = load_run(out)
    optimizer_steps = [s for s in run.steps if s.boundary == "manual"]
    assert len(optimizer_steps) == trainer.state.global_step == 8
    assert all(s.backward_calls == 2 for s in optimizer_steps)
    assert above_info(run.findings) == []
    assert not [line for line in lines if "WARNING" in line or "ERROR" in line]
    # AND the evaluations appear as validation phases between training phases
    seen = phases(out)
    assert seen[0] == ("train", "start")
    assert seen.count(("validation", "start")) == seen.count(("validation", "end")) == 2


def test_logits_kept_by_preprocess_logits_for_metrics_are_named(tmp_path: Path) -> None:
    # GIVEN preprocess_logits_for_metrics keeps every batch's logits in a list (evaluating
    #       every step, so the list grows every step)
    kept: list[torch.Tensor] = []

    def keep_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        kept.append(logits)
        return logits.argmax(-1)

    out = tmp_path / "leak.db"
    trainer = _trainer(
        tmp_path,
        MemwatchCallback(out=out, report=False),
        max_steps=10,
        eval_steps=1,
        eval_samples=16,
        compute_metrics=lambda p: {"n": float(len(p.predictions))},
        preprocess_logits_for_metrics=keep_logits,
    )
    with logged(LOGGER) as lines:
        trainer.train()
    # THEN memory-growth names `kept` (in this test's frame), in the run and in the log
    run = load_run(out)
    (finding,) = [f for f in run.findings if f.kind == "memory-growth"]
    assert finding.variable == "kept"
    assert finding.location is not None
    assert finding.location.file.endswith("test_transformers.py")
    assert any("memory-growth" in line and "`kept`" in line for line in lines)
