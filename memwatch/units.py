"""Byte sizes: parse what people type (``512MiB``, ``2GB``, ``1.5GiB``) and print them back."""

from __future__ import annotations

import re

from memwatch.errors import MemwatchError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Return the number of bytes ``text`` names.

    Decimal units (KB, MB, GB) are powers of 1000 and binary units (KiB, MiB, GiB) powers
    of 1024, as on the labels of disks and in ``nvidia-smi`` respectively.

    Raises:
        MemwatchError: for anything that is not a non-negative size.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise MemwatchError(f"invalid size {text!r}: a size cannot be negative")
        return text
    if str(text).strip().startswith("-"):
        raise MemwatchError(f"invalid size {text!r}: a size cannot be negative")
    match = _SIZE_RE.match(str(text))
    if match is None or match.group(2).lower() not in _UNITS:
        raise MemwatchError(
            f"invalid size {text!r}: use a number with an optional unit, e.g. 512MiB, 2GB, "
            "1.5GiB or 1048576"
        )
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def parse_budget(text: str | int) -> int:
    """A device budget: a size of at least one byte (a budget of 0 could run nothing)."""
    size = parse_size(text)
    if size <= 0:
        raise MemwatchError(
            f"invalid budget {text!r}: a budget must be more than 0 bytes, e.g. 512MiB"
        )
    return size


def format_size(num_bytes: float | None, signed: bool = False) -> str:
    """Human-readable binary size: ``1.5 GiB``, ``312 KiB``, ``-4.0 MiB`` (``n/a`` for None)."""
    if num_bytes is None:
        return "n/a"
    sign = ""
    if num_bytes < 0:
        sign = "-"
    elif signed:
        sign = "+"
    value = abs(float(num_bytes))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B":
                return f"{sign}{int(value)} B"
            return f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
