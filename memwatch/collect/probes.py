"""The probes a watch runs by default, in one list so each detector's evidence has a home."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memwatch.collect.categories import CategoriesProbe
from memwatch.collect.holders_probe import HoldersProbe
from memwatch.collect.loop_probes import LoopProbe
from memwatch.collect.oom_probe import OomProbe
from memwatch.collect.probe import Probe

if TYPE_CHECKING:
    from memwatch.session import Watch


def default_probes(watch: Watch) -> list[Probe]:
    """Fresh probe instances for one watch (deep analysis may add expensive ones)."""
    probes: list[Probe] = []
    probes.append(LoopProbe())  # loop-order detectors (docs/detectors-loop.md)
    probes.append(OomProbe())  # OOM holders and retries (docs/oom.md)
    probes.append(HoldersProbe.for_watch(watch))  # holders, graphs: detectors-holders.md
    probes.append(CategoriesProbe())  # memory by category per step (docs/compare.md)
    if watch.snapshot_at_step is not None or watch.snapshot_on_oom:
        from pathlib import Path

        from memwatch.collect.snapshot import SnapshotProbe

        run = watch.run_path if watch.run_path is not None else Path("memwatch-snapshot.db")
        base = run.with_suffix("")
        probes.append(SnapshotProbe(base, watch.snapshot_at_step, watch.snapshot_on_oom))
    return probes
