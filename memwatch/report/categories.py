"""Memory by category in the reports: the breakdown at the run's peak step.

Pure functions over ``MemoryCategories`` records (from a watch or a run file).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memwatch.analysis.categories import peak_categories, step_total
from memwatch.records import CATEGORY_FIELDS, MemoryCategories
from memwatch.units import format_size

BASIS_LABELS = {
    "cuda-allocator": "of the CUDA allocator's peak",
    "tracked-tensors": "of the tracked tensor peak",
    "estimated": "estimated: CPU run without a total, the rest unknown",
}


def categories_dict(categories: Sequence[MemoryCategories]) -> dict[str, Any] | None:
    """The JSON report's ``categories`` object (absent from runs that recorded none)."""
    peak = peak_categories(categories)
    if peak is None:
        return None
    final = categories[-1]
    return {
        "basis": peak.basis,
        "steps": len(categories),
        "at_peak": peak.to_dict(),
        "final": final.to_dict(),
    }


def category_lines(categories: Sequence[MemoryCategories]) -> list[str]:
    """The text report's block: each category's bytes and share at the peak step."""
    peak = peak_categories(categories)
    if peak is None:
        return []
    total = step_total(peak)
    label = BASIS_LABELS.get(peak.basis, peak.basis)
    lines = [f"  by category at step {peak.step} ({label}):"]
    for name, attr in CATEGORY_FIELDS:
        value = getattr(peak, attr)
        if value is None:
            continue
        share = f" ({100 * value / total:.0f}%)" if total else ""
        lines.append(f"    {name:<15}{format_size(value)}{share}")
    return lines
