"""memwatch around a hand-written accelerate loop: ``with watch_accelerator(accelerator):``.

An accelerate loop is the user's own loop, so memwatch's automatic step detection applies
as is: a step ends at the wrapped optimizer's real ``step()``. Under
``accelerator.accumulate(model)`` the ``AcceleratedOptimizer`` only steps (and zeroes) at
the end of each accumulation window, so the micro-batches of one update are one step,
exactly as ``accelerator.sync_gradients`` counts them. What this helper adds is the rank:
each process (``accelerator.process_index`` of ``accelerator.num_processes``) writes its own
``-rank<N>`` run file into one run directory, also when the launcher did not set
torchrun's ``RANK``, and only the main process prints the report at the end.

    accelerator = Accelerator(gradient_accumulation_steps=4)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    with watch_accelerator(accelerator, out="runs/exp1") as mw:
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()

Nothing here imports accelerate: the helper reads the accelerator's attributes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def watch_accelerator(
    accelerator: Any,
    out: str | os.PathLike[str] | None = None,
    report: bool = True,
    **watch_options: Any,
) -> Iterator[Any]:
    """A ``memwatch.Watch`` for this process of an accelerate run (see the module doc).

    ``report`` prints the text report on the main process when the block ends;
    ``watch_options`` are ``memwatch.Watch``'s (``budget``, ``track_tensors``...).
    """
    from memwatch.session import memwatch

    world = int(getattr(accelerator, "num_processes", 1) or 1)
    rank = int(getattr(accelerator, "process_index", 0) or 0) if world > 1 else None
    watch = memwatch(out, rank=rank, world_size=world if world > 1 else None, **watch_options)
    failed = False
    with watch:
        try:
            yield watch
        except BaseException:
            failed = True
            raise
    if report and not failed and bool(getattr(accelerator, "is_main_process", True)):
        print(watch.report(), file=sys.stderr, end="")
        if watch.run_path is not None:
            print(f"memwatch: run file {watch.run_path}", file=sys.stderr)
