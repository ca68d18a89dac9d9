"""``MemwatchCallback`` for Lightning: ``Trainer(callbacks=[MemwatchCallback()])``.

A step is one optimizer step of the Trainer (``trainer.global_step``), so gradient
accumulation is honoured: the batches of one accumulation window are one step. The
sanity check, training, validation, test and predict phases are recorded as ``phase``
events; findings go to Lightning's console logger as they appear; the run file and the
report come out when the stage ends (``teardown``). Under DDP each rank writes its own
``-rank<N>`` run file into one run directory (pass ``out=DIR`` so that ranks started by
Lightning's own launcher agree on it).

Imports ``lightning`` (or the older ``pytorch_lightning``) when this module is imported;
``memwatch`` itself never depends on it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from memwatch.integrations.framework import FrameworkWatch

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - only the older package is installed
    try:
        from pytorch_lightning.callbacks import Callback  # type: ignore[no-redef,assignment,unused-ignore]
    except ImportError as exc:
        raise ImportError(
            "memwatch.integrations.lightning needs Lightning: pip install 'memwatch[frameworks]'"
        ) from exc

_LOGGER = logging.getLogger("lightning.pytorch.callbacks.memwatch")


class MemwatchCallback(Callback):
    """Watch a Lightning run with memwatch (see the module docstring).

    Args:
        out: run file, or run directory under several ranks (default ``memwatch-runs/``).
        report: print memwatch's report to stderr at the end of the stage (rank 0).
        watch_options: ``memwatch.Watch`` options (``budget``, ``track_tensors``, ...).
    """

    def __init__(
        self, out: str | os.PathLike[str] | None = None, report: bool = True, **watch_options: Any
    ) -> None:
        super().__init__()
        self.run = FrameworkWatch("lightning", _LOGGER, out, report, **watch_options)
        self._per_batch = False  # a stage without optimizer steps: one batch, one step

    @property
    def watch(self) -> Any:
        """The ``memwatch.Watch`` of the stage running now (None outside one)."""
        return self.run.watch

    # -- lifecycle ------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._per_batch = stage != "fit"
        self.run.start(trainer.global_step, trainer.global_rank, trainer.world_size)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.run.step_to(trainer.global_step)
        self.run.stop()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.run.stop(failed=True)

    # -- steps ----------------------------------------------------------------------------
    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        # Training resumes after a validation pass inside the epoch (a no-op otherwise).
        self.run.phase("train", "start", trainer.global_step)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.run.step_to(trainer.global_step)

    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if self._per_batch:
            self.run.batch_done()

    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if self._per_batch:
            self.run.batch_done()

    def on_predict_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        if self._per_batch:
            self.run.batch_done()

    # -- phases ---------------------------------------------------------------------------
    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self.run.phase("sanity_check", "start", trainer.global_step)

    def on_sanity_check_end(self, trainer: Any, pl_module: Any) -> None:
        self.run.phase("sanity_check", "end", trainer.global_step)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.run.phase("train", "start", trainer.global_step)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.run.phase("train", "end", trainer.global_step)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.run.phase("validation", "start", trainer.global_step)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.run.phase("validation", "end", trainer.global_step)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self.run.phase("test", "start", trainer.global_step)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self.run.phase("test", "end", trainer.global_step)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self.run.phase("predict", "start", trainer.global_step)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self.run.phase("predict", "end", trainer.global_step)
