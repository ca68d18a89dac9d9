"""NVML: found by UUID (not CUDA's index), MIG instances, one init and one shutdown."""

from __future__ import annotations

import pytest
import torch

from memwatch import memwatch
from tests.cuda.steps import Loop
from tests.fakecuda import FakeCuda, FakeGpu, FakeNvml, NvmlDevice

GiB = 1024**3


def test_each_rank_reads_its_own_gpu_in_nvml_by_uuid(
    fake_cuda: FakeCuda, fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN NVML listing the GPUs in the reverse of CUDA's order, rank 1
    monkeypatch.setenv("LOCAL_RANK", "1")
    with memwatch(store=False) as mw:
        torch.cuda.set_device(1)
        Loop(fake_cuda).step(1024)
    # THEN the rank's step reads CUDA device 1's GPU (2 GiB used), not NVML's index 1
    assert mw.steps[0].device_used_bytes == 2 * GiB
    # AND NVML was started once and shut down at the end
    assert fake_nvml.inits == 1 and fake_nvml.shutdowns == 1


def test_a_mig_instance_is_read_through_its_mig_uuid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN CUDA device 0 is a MIG instance of a GPU in MIG mode
    import sys

    mig_uuid = "abcdef01-2345-6789-abcd-ef0123456789"
    fake = FakeCuda([FakeGpu(name="NVIDIA A100 MIG 1g.10gb", total=10 * GiB, uuid=mig_uuid)])
    fake.install(monkeypatch)
    gpu = NvmlDevice(uuid="GPU-99999999-0000-0000-0000-000000000000", used=30 * GiB)
    gpu.mig = [NvmlDevice(uuid=f"MIG-{mig_uuid}", used=3 * GiB, total=10 * GiB)]
    nvml = FakeNvml([gpu]).install(monkeypatch)
    assert sys.modules["pynvml"] is nvml
    # WHEN a step runs on it
    with memwatch(store=False) as mw:
        torch.cuda.set_device(0)
        Loop(fake).step(1024)
    # THEN the instance's memory is read, not the whole GPU's
    assert mw.steps[0].device_used_bytes == 3 * GiB


def test_a_cpu_program_never_starts_nvml(fake_cuda: FakeCuda, fake_nvml: FakeNvml) -> None:
    with memwatch(store=False) as mw:
        Loop(fake_cuda).model(torch.randn(2, 4)).sum().backward()
        mw.step()
    assert fake_nvml.inits == 0
    assert mw.steps[0].device_used_bytes is None
