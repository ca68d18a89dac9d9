"""Fixtures for the plugin's tests: inner pytest sessions that behave like a user's."""

from __future__ import annotations

import contextlib
import importlib

import pytest

# pytester's in-process runs drop every module first imported inside them. torch cannot be
# imported twice (its operator libraries register once per process), so everything the
# inner sessions touch is imported here, once, by the outer session (torch._dynamo is
# imported lazily by torch.manual_seed; the profiler module by a watch's start).
for _module in (
    "torch",
    "torch._dynamo",
    "torch.profiler._cupti_monitor",
    "memwatch.collect.budget",
    "memwatch.collect.environment",
    "memwatch.collect.probes",
    "memwatch.collect.tracker",
    "memwatch.testing",
):
    with contextlib.suppress(ImportError):  # private torch modules come and go
        importlib.import_module(_module)


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester whose inner sessions behave like a user's: strict markers, no cache.

    textual-snapshot is switched off inside: its session-end hook removes a temporary
    directory shared with the outer session.
    """
    pytester.makeini(
        "[pytest]\naddopts = --strict-markers -p no:cacheprovider -p no:textual-snapshot\n"
    )
    return pytester
