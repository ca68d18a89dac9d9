"""Pure helpers over ``MemoryCategories``: totals and the peak step (for reports,
comparisons and detectors)."""

from __future__ import annotations

from collections.abc import Sequence

from memwatch.records import MemoryCategories


def counted_bytes(c: MemoryCategories) -> int:
    """The four counted categories (what a CPU run without a total knows)."""
    return c.parameters_bytes + c.gradients_bytes + c.optimizer_bytes + c.activations_bytes


def step_total(c: MemoryCategories) -> int:
    return c.total_bytes if c.total_bytes is not None else counted_bytes(c)


def peak_categories(categories: Sequence[MemoryCategories]) -> MemoryCategories | None:
    """The step whose total (or counted bytes) is highest: the breakdown worth showing."""
    if not categories:
        return None
    return max(categories, key=lambda c: (step_total(c), c.step))
