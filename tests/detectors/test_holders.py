"""The holder scan: which names hold which tensors at a step end, cheaply and boundedly."""

from __future__ import annotations

import argparse
import gc
import sys
import weakref
from collections import deque
from types import FrameType

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.collect import probes
from memwatch.collect.holders import (
    EXACT_ELEMENTS,
    Entry,
    FrameInfo,
    HolderReporter,
    HolderScanner,
    Scan,
    read_locals,
)
from memwatch.collect.holders_probe import HoldersProbe

MiB = 1 << 20


class Meter:
    """A plain object holding a tensor attribute (like an AverageMeter misused)."""

    def __init__(self) -> None:
        self.sum = torch.zeros(1024)  # 4 KiB
        self.count = 3


class Cached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.cache: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _scan_here(frame: FrameType) -> Scan:
    return HolderScanner().scan([frame], step=0)


def _by_name(scan: Scan) -> dict[str, int]:
    return {e.name: e.bytes for e in scan.entries}


def test_locals_attributes_containers_and_module_caches_are_named() -> None:
    # GIVEN a frame holding a tensor, a view of it, a list of tensors, a plain object with a
    #       tensor attribute and a model whose submodule caches a tensor attribute
    data = torch.zeros(256, 1024)  # 1 MiB
    batch = data[:16]  # a view: same storage
    outputs = [torch.zeros(1024) for _ in range(4)]  # 4 x 4 KiB
    meter = Meter()
    model = nn.Sequential(Cached())
    model[0].cache = torch.zeros(2048)  # 8 KiB, not a parameter or buffer
    # WHEN the frame is scanned
    scan = _scan_here(sys._getframe())
    names = _by_name(scan)
    # THEN each holder is named as a person would write it, with its storage bytes
    assert names["data"] == MiB
    assert names["batch"] == 0  # the storage was counted once, under `data`
    assert names["outputs"] == 4 * 4096
    assert names["meter.sum"] == 4096
    assert names["model[0].cache"] == 8192
    assert names["model"] == sum(p.numel() * 4 for p in model.parameters())
    assert "meter.count" not in names  # numbers are not holders
    del data, batch, outputs, meter, model


def test_big_containers_are_sampled_not_walked() -> None:
    # GIVEN a list far longer than the exact-count limit, of same-sized tensors
    many = [torch.zeros(256) for _ in range(EXACT_ELEMENTS * 20)]
    # WHEN scanned
    entry = next(e for e in _scan_here(sys._getframe()).entries if e.name == "many")
    # THEN its bytes and tensor count are estimated from a sample, and say so
    assert entry.estimated
    assert entry.length == len(many)
    assert entry.bytes == len(many) * 1024
    assert entry.tensors == len(many)


def test_containers_and_objects_without_tensors_are_skipped() -> None:
    # GIVEN a history of floats, a dict of lists of numbers and a stdlib object
    history = [0.5] * 1000
    curves = {"loss": [0.1, 0.2], "acc": [0.9]}
    args = argparse.Namespace(lr=0.1, steps=10)
    # WHEN scanned
    names = _by_name(_scan_here(sys._getframe()))
    # THEN none of them is a holder
    assert not {"history", "curves", "args", "args.lr"} & names.keys()
    del history, curves, args


def test_grad_flags_mark_tensors_and_container_tails_carrying_a_graph() -> None:
    # GIVEN a loss with a graph and a list whose last element has one
    w = torch.ones(4, requires_grad=True)
    loss = (w * 2).sum()
    losses = [torch.zeros(()), (w * 3).sum()]
    # WHEN scanned
    entries = {e.name: e for e in _scan_here(sys._getframe()).entries}
    # THEN both carry the grad flag; the parameter-like leaf is not a holder of its own
    assert entries["loss"].grad
    assert entries["losses"].grad
    assert "w" in entries and not entries["w"].grad
    del loss, losses


def test_reading_locals_does_not_keep_a_deleted_tensor_alive() -> None:
    # GIVEN a big local whose frame has been read by memwatch
    big = torch.zeros(1024, 1024)
    ref = weakref.ref(big)
    read_locals(sys._getframe())
    # WHEN the user deletes it
    del big
    # THEN it is freed at once (the frame's f_locals snapshot was not left holding it)
    assert ref() is None


def test_a_watched_loop_frees_rebound_step_outputs_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a training loop watched by the holders probe (alone), deleting `out` each step
    monkeypatch.setattr(probes, "default_probes", lambda watch: [HoldersProbe(stride=1)])
    torch.manual_seed(0)
    model = nn.Linear(64, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    refs = []
    with memwatch(store=False):
        for _ in range(4):
            out = model(torch.randn(8, 64))
            out.sum().backward()
            opt.step()
            refs.append(weakref.ref(out))
            del out
            # THEN once the user drops it, no step's output survives (memwatch held none)
            gc.collect()
            assert all(r() is None for r in refs)


def test_deque_and_dict_holders_are_measured() -> None:
    # GIVEN a bounded deque and a dict cache of tensors
    window: deque[torch.Tensor] = deque((torch.zeros(512) for _ in range(3)), maxlen=8)
    cache = {i: torch.zeros(256) for i in range(5)}
    # WHEN scanned
    names = _by_name(_scan_here(sys._getframe()))
    # THEN both are holders with their exact bytes
    assert names["window"] == 3 * 2048
    assert names["cache"] == 5 * 1024
    del window, cache


def _scan_of(*pairs: tuple[str, int]) -> Scan:
    code = sys._getframe().f_code
    scan = Scan(step=1)
    scan.frames = [FrameInfo(code, code.co_filename, code.co_firstlineno, "loop", 1, False)]
    scan.entries = [Entry(name, "local", "tensor", size, 1, 0) for name, size in pairs]
    return scan


def test_holder_snapshots_are_written_only_when_the_top_set_moves() -> None:
    reporter = HolderReporter()
    # GIVEN a first snapshot
    first = reporter.maybe_records(_scan_of(("x", 4 * MiB), ("loss", 4)))
    # THEN it is written
    assert first is not None and [h.name for h in first] == ["x", "loss"]
    # WHEN nothing moved, or moved by a few bytes
    assert reporter.maybe_records(_scan_of(("x", 4 * MiB), ("loss", 4))) is None
    assert reporter.maybe_records(_scan_of(("x", 4 * MiB + 100), ("loss", 8))) is None
    # THEN nothing is written; WHEN a holder grows by more than 10 %, or a name appears
    grown = reporter.maybe_records(_scan_of(("x", 5 * MiB), ("loss", 8)))
    assert grown is not None and grown[0].bytes == 5 * MiB
    assert reporter.maybe_records(_scan_of(("x", 5 * MiB), ("loss", 8), ("cache", MiB)))
