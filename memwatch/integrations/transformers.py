"""``MemwatchCallback`` for the transformers ``Trainer``: ``callbacks=[MemwatchCallback()]``.

A step is one optimizer step of the Trainer (``state.global_step``): with
``gradient_accumulation_steps=k`` the k micro-batches of one update are one step.
Training and evaluation/prediction passes are recorded as ``phase`` events; findings go to
the transformers logger as they appear; the run file and the report come out at
``on_train_end``. Each process of a distributed run writes its own ``-rank<N>`` run file
into one run directory (``out=DIR``).

The callback watches ``Trainer.train()`` (evaluations during training included); a
stand-alone ``trainer.evaluate()`` outside ``train()`` is not recorded.

Imports ``transformers`` when this module is imported; ``memwatch`` never depends on it.
"""

from __future__ import annotations

import os
from typing import Any

from memwatch.integrations.framework import FrameworkWatch

try:
    from transformers import TrainerCallback
    from transformers.utils import logging as hf_logging
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "memwatch.integrations.transformers needs transformers: pip install 'memwatch[frameworks]'"
    ) from exc

_LOGGER = hf_logging.get_logger("transformers.trainer.memwatch")


class MemwatchCallback(TrainerCallback):  # type: ignore[misc,unused-ignore]
    """Watch ``Trainer.train()`` with memwatch (see the module docstring).

    Args:
        out: run file, or run directory under several processes (default
            ``memwatch-runs/``).
        report: print memwatch's report to stderr when training ends (main process).
        watch_options: ``memwatch.Watch`` options (``budget``, ``track_tensors``, ...).
    """

    def __init__(
        self, out: str | os.PathLike[str] | None = None, report: bool = True, **watch_options: Any
    ) -> None:
        self.run = FrameworkWatch("transformers", _LOGGER, out, report, **watch_options)

    @property
    def watch(self) -> Any:
        """The ``memwatch.Watch`` of the training running now (None outside one)."""
        return self.run.watch

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.run.start(state.global_step, args.process_index, args.world_size)
        self.run.phase("train", "start", state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.run.step_to(state.global_step)

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Called after each evaluation batch; the first one opens the evaluation phase.
        self.run.phase("validation", "start", state.global_step)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.run.phase("validation", "end", state.global_step)
        self.run.phase("train", "start", state.global_step)

    def on_predict(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        self.run.phase("validation", "end", state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.run.step_to(state.global_step)
        self.run.stop()
