"""The fake CUDA layer (tests/fakecuda.py) as fixtures: installed for one test, then gone."""

from __future__ import annotations

import pytest

from tests.fakecuda import FakeCuda, FakeNvml, NvmlDevice


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    """Two 80 GiB GPUs, CUDA not initialised, no NVML (``pynvml`` import fails)."""
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # type: ignore[arg-type]
    return FakeCuda().install(monkeypatch)


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch, fake_cuda: FakeCuda) -> FakeNvml:
    """NVML over the fake GPUs, listed in PCI order, which here is the reverse of CUDA's
    (as with CUDA_DEVICE_ORDER=FASTEST_FIRST, or CUDA_VISIBLE_DEVICES=1,0)."""
    devices = [
        NvmlDevice(uuid=f"GPU-{gpu.uuid}", used=(index + 1) * 1024**3)
        for index, gpu in enumerate(fake_cuda.gpus)
    ]
    return FakeNvml(list(reversed(devices))).install(monkeypatch)
