"""The probes a watch runs by default, in one list so each detector's evidence has a home."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memwatch.collect.probe import Probe

if TYPE_CHECKING:
    from memwatch.session import Watch


def default_probes(watch: Watch) -> list[Probe]:
    """Fresh probe instances for one watch (deep analysis may add expensive ones)."""
    probes: list[Probe] = []
    return probes
