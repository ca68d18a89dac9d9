"""The list of detectors, one per finding kind, and the function that runs them all."""

from __future__ import annotations

import warnings

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.records import Finding, sort_findings

DETECTORS: list[Detector] = []
_warned: set[str] = set()


def analyze(data: AnalysisInput) -> list[Finding]:
    """Every detector's findings, most severe first.

    A detector that raises is skipped with one warning: a bug in one check must not
    hide what the others found.
    """
    findings: list[Finding] = []
    for detector in DETECTORS:
        try:
            findings.extend(detector(data))
        except Exception as exc:
            name = getattr(detector, "__module__", repr(detector))
            if name not in _warned:
                _warned.add(name)
                warnings.warn(f"memwatch: detector {name} failed ({exc!r})", stacklevel=2)
    return sort_findings(findings)
