"""The probes a watch runs by default, in one list so each detector's evidence has a home."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from memwatch.collect.categories import CategoriesProbe
from memwatch.collect.flags_probe import FlagsProbe
from memwatch.collect.gc_probe import GcCycleProbe
from memwatch.collect.holders_probe import HoldersProbe
from memwatch.collect.hook_sites import HookSitesProbe
from memwatch.collect.loop import LoopProbe
from memwatch.collect.oom_probe import OomProbe
from memwatch.collect.probe import Probe
from memwatch.collect.step_kept_probe import StepKeptProbe


@dataclass(frozen=True)
class ProbeOptions:
    """What the watch's options say about its probes (collection never reads the watch)."""

    deep: bool = False  # analysis="deep": the expensive checks on every step
    snapshot_at_step: int | None = None
    snapshot_on_oom: bool = False
    run_path: Path | None = None


def default_probes(options: ProbeOptions) -> list[Probe]:
    """Fresh probe instances for one watch."""
    probes: list[Probe] = []
    probes.append(LoopProbe())  # loop-order detectors (docs/detectors-loop.md)
    probes.append(OomProbe())  # OOM holders and retries (docs/oom.md)
    probes.append(HoldersProbe.for_mode(options.deep))  # holders, graphs: detectors-holders.md
    probes.append(StepKeptProbe())  # graphs kept one step: docs/graph-kept-across-step.md
    probes.append(CategoriesProbe())  # memory by category per step (docs/compare.md)
    probes.append(GcCycleProbe())  # objects freed only by the cyclic gc (docs/gc-cycles.md)
    probes.append(FlagsProbe())  # autograd debugging switches left on (docs/train-mode-smell.md)
    probes.append(HookSitesProbe())  # hooks piling up per line (docs/hooks-accumulate.md)
    if options.snapshot_at_step is not None or options.snapshot_on_oom:
        from memwatch.collect.snapshot import SnapshotProbe

        run = options.run_path if options.run_path is not None else Path("memwatch-snapshot.db")
        base = run.with_suffix("")
        probes.append(SnapshotProbe(base, options.snapshot_at_step, options.snapshot_on_oom))
    return probes
