"""Zoo cases today's detectors get wrong, each with what memwatch reported instead.

Keys are ``group/slug`` (``bugs/x`` and its twin ``fixed/x`` share a slug). ``bugs/...``
entries are misses (not found with the expected kind, or found but not named);
``fixed/...`` and ``healthy/...`` entries are FALSE ALARMS (the reason starts with
"FALSE ALARM" and names the kind raised). tests/zoo/test_zoo.py marks each listed case
``xfail(strict=True)``: when a detector starts getting a case right, its test XPASSes and
fails the suite until the entry is removed here. Reasons were written from
``python benchmarks/zoo.py`` output on today's detectors.
"""

from __future__ import annotations

KNOWN_MISSES: dict[str, str] = {}
