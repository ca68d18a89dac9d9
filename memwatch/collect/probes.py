"""The probes a watch runs by default, in one list so each detector's evidence has a home."""

from __future__ import annotations

from memwatch.collect.holders_probe import HoldersProbe
from memwatch.collect.loop import LoopProbe
from memwatch.collect.oom_probe import OomProbe
from memwatch.collect.probe import Probe


def default_probes(deep: bool = False) -> list[Probe]:
    """Fresh probe instances for one watch (``deep``: the expensive checks every step)."""
    probes: list[Probe] = []
    probes.append(LoopProbe())  # loop-order detectors (docs/detectors-loop.md)
    probes.append(OomProbe())  # OOM holders and retries (docs/oom.md)
    probes.append(HoldersProbe.for_mode(deep))  # holders, graphs: detectors-holders.md
    return probes
