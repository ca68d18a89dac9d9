"""One cause, reported once: findings of different kinds that describe the same leak.

Detectors judge their own evidence and cannot see each other's findings, so a leak that
one detector names with a variable and a line (``total += loss``: graph-accumulation) can
also show, through its side effects, in a detector that can only say *that* memory grows:
``host-memory-growth`` sees the process's RSS climb (the leaked graph's nodes live on the
host) and, having no location, guesses at "a Dataset cache". The user then reads two
problems where there is one, and the second points the wrong way.

Rule: a location-less ``host-memory-growth`` is withdrawn when a located finding of a kind
that grows memory step after step (``GROWING_KINDS``, with a growth per step) began
before the RSS growth was last measured; the located finding keeps the RSS numbers in its
evidence (``explains``), so nothing measured is lost.
"""

from __future__ import annotations

from dataclasses import replace

from memwatch.records import Finding

#: Kinds whose findings name what grows memory at every step (variable and line).
GROWING_KINDS = frozenset(
    {"graph-accumulation", "retain-graph-leak", "graph-retained-in-inference", "memory-growth"}
)
#: Kinds that only measure growth and cannot say where it comes from.
UNLOCATED_KINDS = frozenset({"host-memory-growth"})


def _explains(located: Finding, unlocated: Finding) -> bool:
    last = unlocated.evidence.get("last_step")
    started = located.first_step if located.first_step is not None else 0
    return isinstance(last, int) and started <= last


def one_cause_once(findings: list[Finding]) -> list[Finding]:
    """``findings`` without location-less growth that a located leak explains (see above)."""
    located = [
        f
        for f in findings
        if f.kind in GROWING_KINDS
        and f.location is not None
        and (f.growth_per_step_bytes or 0) > 0
        and f.severity in ("error", "warning")
    ]
    if not located:
        return findings
    kept: list[Finding] = []
    notes: dict[str, list[dict[str, object]]] = {}
    for finding in findings:
        cause = next(
            (
                c
                for c in located
                if finding.kind in UNLOCATED_KINDS
                and finding.location is None
                and _explains(c, finding)
            ),
            None,
        )
        if cause is None:
            kept.append(finding)
            continue
        notes.setdefault(cause.key, []).append(
            {
                "kind": finding.kind,
                "growth_per_step_bytes": finding.growth_per_step_bytes,
                "bytes": finding.bytes,
                "first_step": finding.first_step,
            }
        )
    return [
        replace(f, evidence={**f.evidence, "explains": notes[f.key]}) if f.key in notes else f
        for f in kept
    ]
