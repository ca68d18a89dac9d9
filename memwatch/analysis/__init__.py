"""Analysis: pure detectors that turn step records and events into findings.

Nothing here imports torch or touches files; the same code runs inside the training
process (every few steps, on a bounded window) and offline on a finished run file.
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.registry import DETECTORS, analyze

__all__ = ["DETECTORS", "AnalysisInput", "Detector", "analyze"]
