"""Sizes as people type them."""

from __future__ import annotations

import pytest

from memwatch.errors import MemwatchError
from memwatch.units import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512MiB", 512 * 1024**2),
        ("2GB", 2 * 1000**3),
        ("1.5GiB", int(1.5 * 1024**3)),
        ("1048576", 1048576),
        (" 64 kib ", 64 * 1024),
        (4096, 4096),
    ],
)
def test_parse_size_accepts_the_documented_forms(text: str | int, expected: int) -> None:
    # GIVEN a size as a user would type it / WHEN parsed / THEN it is that many bytes
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12XB", "-5MB", "MiB", "1.2.3GB", -1])
def test_parse_size_rejects_nonsense_with_one_clear_message(text: str | int) -> None:
    # GIVEN something that is not a size / WHEN parsed / THEN a MemwatchError says so
    with pytest.raises(MemwatchError, match="invalid size"):
        parse_size(text)


def test_format_size_picks_a_readable_unit() -> None:
    assert format_size(512) == "512 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(3 * 1024**3) == "3.0 GiB"
    assert format_size(-2 * 1024**2) == "-2.0 MiB"
    assert format_size(1024, signed=True) == "+1.0 KiB"
    assert format_size(None) == "n/a"
