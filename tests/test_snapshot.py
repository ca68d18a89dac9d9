"""--snapshot-at-step / --snapshot-on-oom: PyTorch memory snapshots beside the run file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from memwatch import memwatch
from memwatch.collect import snapshot
from memwatch.store import RunReader


def _train(steps: int = 4) -> None:
    model = torch.nn.Linear(16, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(8, 16)).sum().backward()
        opt.step()


class FakeApi:
    """Stands in for torch.cuda.memory's history recorder on a machine without CUDA."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def record(self, enabled: Any = "all", **kwargs: Any) -> None:
        self.calls.append(("record", enabled))

    def dump(self, path: str) -> None:
        self.calls.append(("dump", path))
        Path(path).write_bytes(b"snapshot")


@pytest.fixture
def cuda_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """The program has initialised CUDA: memwatch's deferred start runs at once."""

    def run_now(action: Any, what: str) -> None:
        action()

    monkeypatch.setattr(snapshot.cuda, "when_initialized", run_now)


def test_without_cuda_one_line_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a CPU machine WHEN a snapshot is asked for
    with memwatch(tmp_path / "run.db", snapshot_at_step=1, snapshot_on_oom=True) as mw:
        _train()
    # THEN one line says why there is none, training and recording go on
    err = capsys.readouterr().err
    assert err.count("CUDA memory snapshots need a CUDA device") == 1
    assert mw.step_count == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.db"]


def test_snapshot_at_step_is_written_beside_the_run_and_never_over_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cuda_in_use: None
) -> None:
    # GIVEN the snapshot API (faked: no CUDA here) and a file already at the default name
    api = FakeApi()
    monkeypatch.setattr(snapshot, "snapshot_api", lambda: (api.record, api.dump))
    (tmp_path / "run-step2.pickle").write_bytes(b"user's file")
    # WHEN step 2 ends under --snapshot-at-step 2
    with memwatch(tmp_path / "run.db", snapshot_at_step=2):
        _train()
    # THEN history was recorded with Python stacks, dumped once at step 2 to a fresh name,
    #      then switched off; the user's file is untouched; the run file names the snapshot
    written = tmp_path / "run-step2-2.pickle"
    assert api.calls == [("record", "all"), ("dump", str(written)), ("record", None)]
    assert (tmp_path / "run-step2.pickle").read_bytes() == b"user's file"
    with RunReader(tmp_path / "run.db") as reader:
        (event,) = reader.events("snapshot")
    assert (event.step, event.data["path"], event.data["reason"]) == (2, str(written), "step2")


def test_snapshot_on_oom_is_written_at_the_first_oom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cuda_in_use: None
) -> None:
    # GIVEN --snapshot-on-oom and a loop that runs out of memory (a CPU budget) twice
    api = FakeApi()
    monkeypatch.setattr(snapshot, "snapshot_api", lambda: (api.record, api.dump))
    with memwatch(tmp_path / "run.db", budget="1MiB", snapshot_on_oom=True):
        for _ in range(2):
            try:
                torch.empty(2 * 1024 * 1024, dtype=torch.uint8)
            except torch.OutOfMemoryError:
                pass
        _train(2)
    # THEN one snapshot, at the first OOM, and the OOM event points to it
    oom_file = tmp_path / "run-oom.pickle"
    assert [c for c in api.calls if c[0] == "dump"] == [("dump", str(oom_file))]
    with RunReader(tmp_path / "run.db") as reader:
        ooms = reader.events("oom")
    assert ooms[0].data["snapshot"] == str(oom_file)


@pytest.mark.gpu
def test_real_snapshot_on_cuda(tmp_path: Path) -> None:
    model = torch.nn.Linear(256, 256).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(tmp_path / "run.db", snapshot_at_step=1):
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(64, 256, device="cuda")).sum().backward()
            opt.step()
    assert (tmp_path / "run-step1.pickle").stat().st_size > 0


def test_the_end_of_run_report_names_the_snapshot(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cuda_in_use: None,
) -> None:
    # GIVEN `memwatch run --snapshot-at-step 1` (API faked) on a small script
    api = FakeApi()
    monkeypatch.setattr(snapshot, "snapshot_api", lambda: (api.record, api.dump))
    script = tmp_path / "train.py"
    script.write_text(
        "import torch\n"
        "m = torch.nn.Linear(4, 4); o = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "for _ in range(3):\n"
        "    o.zero_grad(); m(torch.randn(2, 4)).sum().backward(); o.step()\n"
    )
    from memwatch.cli import main

    status = main(["run", "--snapshot-at-step", "1", "--out", str(tmp_path / "r.db"), str(script)])
    # THEN the report at the end lists the snapshot file
    err = capsys.readouterr().err
    assert status == 0
    assert f"memory snapshot  {tmp_path / 'r-step1.pickle'} (step 1" in err


def test_recording_starts_only_when_the_program_initialises_cuda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a GPU host (the fake CUDA layer: CUDA built, not initialised) and the API faked
    import sys

    from tests.fakecuda import FakeCuda

    monkeypatch.setitem(sys.modules, "pynvml", None)  # type: ignore[arg-type]
    FakeCuda().install(monkeypatch)
    api = FakeApi()
    monkeypatch.setattr(snapshot, "snapshot_api", lambda: (api.record, api.dump))
    with memwatch(tmp_path / "run.db", snapshot_at_step=5, store=False):
        # WHEN the watch starts, THEN memwatch has not initialised CUDA to record history
        assert not torch.cuda.is_initialized()
        assert api.calls == []
        # WHEN the program initialises CUDA itself, THEN recording starts
        torch.cuda.set_device(0)
        assert api.calls == [("record", "all")]
    # AND the watch's end switches it off again
    assert api.calls[-1] == ("record", None)
