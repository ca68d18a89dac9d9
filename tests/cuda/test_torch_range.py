"""Private and newer torch APIs are feature-detected, and each fallback works."""

from __future__ import annotations

import contextlib
import io
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.cli import main
from memwatch.commands.common import LoadedRun, load_run
from tests.cuda.steps import Loop
from tests.fakecuda import FakeCuda
from tests.helpers import SAMPLES, run_sample

_top = torch._C._autograd._top_saved_tensors_default_hooks


def test_without_the_top_of_hooks_helper_the_saved_tensor_hooks_are_still_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a torch without _top_saved_tensors_default_hooks
    monkeypatch.delattr(torch._C._autograd, "_top_saved_tensors_default_hooks")
    model = nn.Linear(4, 4)
    # WHEN a watch runs and ends
    with memwatch(store=False) as mw:
        model(torch.randn(2, 4)).sum().backward()
        mw.step()
    # THEN its saved-tensor hooks are gone, and the bytes were still counted
    assert _top(False) is None
    assert mw.steps[0].saved_peak_bytes > 0


def test_the_out_of_memory_class_falls_back_to_older_names() -> None:
    from memwatch.collect.oom import oom_error_class  # (new: imported here so the
    # other tests of this file also run against older memwatch)

    # GIVEN torches of different ages, WHEN the OOM class is looked up, THEN
    class Older(RuntimeError):
        pass

    newest = types.SimpleNamespace(OutOfMemoryError=torch.OutOfMemoryError)
    older = types.SimpleNamespace(cuda=types.SimpleNamespace(OutOfMemoryError=Older))
    assert oom_error_class(newest) is torch.OutOfMemoryError  # 2.5+: torch.OutOfMemoryError
    assert oom_error_class(older) is Older  # before: torch.cuda.OutOfMemoryError
    neither = oom_error_class(types.SimpleNamespace())
    assert issubclass(neither, RuntimeError)  # a private class: isinstance checks still work


def test_without_torchs_lazy_call_queue_the_observer_attaches_at_the_first_cuda_step(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a torch without torch.cuda._lazy_call, and a watch started before CUDA
    monkeypatch.delattr(torch.cuda, "_lazy_call")
    loop = Loop(fake_cuda)
    with memwatch(store=False) as mw:
        torch.cuda.set_device(0)
        loop.step(1024)  # WHEN a first CUDA step ends
        with pytest.raises(torch.OutOfMemoryError):
            fake_cuda.alloc(100 * 1024**3)
    # THEN the allocator's observer was attached there: the OOM has its numbers
    (event,) = [e for e in mw.events if e.kind == "oom"]
    assert event.data["device_limit_bytes"] == 80 * 1024**3


def test_without_torchs_lazy_call_queue_a_budget_says_it_cannot_limit_the_gpu(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delattr(torch.cuda, "_lazy_call")
    with memwatch(budget="8GiB", store=False):
        torch.cuda.set_device(0)
    assert fake_cuda.allocators[0].fraction is None
    assert "budget is not applied on the GPU" in capsys.readouterr().err


# -- private APIs whose absence switches one part off ---------------------------------------
def train_a_little(seed: int = 0) -> list[float]:
    """A few SGD steps on a fixed seed: the numbers a watch must not change."""
    torch.manual_seed(seed)
    model = nn.Linear(8, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = model(torch.randn(16, 8)).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def memwatch_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("memwatch")]


@pytest.mark.parametrize(
    "missing", ["_push_saved_tensors_default_hooks", "_pop_saved_tensors_default_hooks"]
)
def test_without_the_default_hooks_stack_saved_tensors_are_not_counted_and_training_is_unchanged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    # GIVEN a torch without autograd's private default-hooks stack
    expected = train_a_little()
    monkeypatch.delattr(torch._C._autograd, missing)
    # WHEN a watch runs a training loop
    with memwatch(store=False) as mw:
        losses = train_a_little()
    # THEN the training's numbers are those of an unwatched run, the steps were recorded,
    # no saved tensor was counted (the steps say so: None, not zero) and no hooks were
    # left behind, and one line said so
    assert losses == expected
    assert len(mw.steps) == 3
    assert all(step.saved_peak_bytes is None and not step.saved_measured for step in mw.steps)
    assert _top(False) is None
    (line,) = memwatch_lines(capsys.readouterr().err)
    assert "_push_saved_tensors_default_hooks" in line and "not measured" in line


@pytest.mark.parametrize("missing", ["TorchDispatchMode", "_get_current_dispatch_mode"])
def test_without_torchs_dispatch_modes_a_cpu_budget_is_off_and_the_program_runs_unchanged(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    import torch.utils._python_dispatch as python_dispatch

    # GIVEN a torch without the (private) python dispatch modes, and a tiny CPU budget
    expected = train_a_little()
    current_mode = python_dispatch._get_current_dispatch_mode
    monkeypatch.delattr(python_dispatch, missing)
    # WHEN a watch with the budget runs the training
    with memwatch(budget="1KiB", store=False) as mw:
        losses = train_a_little()
    # THEN nothing ran out of memory, the numbers are unchanged, steps were recorded
    # without allocator numbers, and one line said the budget is not applied
    assert losses == expected
    assert len(mw.steps) == 3
    assert all(step.allocated_bytes is None for step in mw.steps)
    assert current_mode() is None  # nothing left on the dispatch stack
    (line,) = memwatch_lines(capsys.readouterr().err)
    assert "TorchDispatchMode" in line and "budget is not applied" in line


def test_without_torchs_dispatch_modes_find_batch_size_on_cpu_says_it_cannot_measure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch.utils._python_dispatch as python_dispatch

    from memwatch import find_batch_size
    from memwatch.errors import MemwatchError

    monkeypatch.delattr(python_dispatch, "TorchDispatchMode")
    with pytest.raises(MemwatchError, match="cannot measure memory on CPU"):
        find_batch_size(lambda size: torch.zeros(size), start=8, budget="1MiB")
    assert len(memwatch_lines(capsys.readouterr().err)) == 1


def test_without_the_thread_sequence_number_graph_accumulation_is_still_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a torch without torch._C._autograd._get_sequence_nr (step watermarks)
    monkeypatch.delattr(torch._C._autograd, "_get_sequence_nr")
    # WHEN the running_loss += loss sample runs under memwatch
    run = run_sample("bugs/graph_accumulation.py", "--steps", "12", out=tmp_path / "r.db")
    # THEN memwatch saw it missing, and the leak is still named, on the variable
    # (the step watermarks come from the highest node number seen)
    from memwatch.collect import graph_probe

    assert graph_probe._peek_sequence_nr() is None
    first = run.findings[0]
    assert first.kind == "graph-accumulation" and first.variable == "running_loss"


def run_with_stderr(sample: str, out: Path) -> tuple[LoadedRun, str]:
    """``memwatch run --no-report --out OUT SAMPLE`` in-process, and its stderr."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(
            ["run", "--no-report", "--out", str(out), str(SAMPLES / sample), "--steps", "12"]
        )
    assert status == 0, err.getvalue()
    return load_run(out), err.getvalue()


def test_nodes_without_sequence_numbers_switch_the_graph_check_off_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from memwatch.collect import graph_probe

    # GIVEN autograd nodes without _sequence_nr() (torch's node types are immutable, so the
    # lookup is handed an object that lacks the method, as an older torch's node would)
    original = graph_probe._sequence_nr
    monkeypatch.setattr(graph_probe, "_sequence_nr", lambda node: original(object()))
    # WHEN the running_loss += loss sample runs under memwatch
    run, err = run_with_stderr("bugs/graph_accumulation.py", tmp_path / "r.db")
    # THEN the run completes with its steps, without graph-accumulation findings, and the
    # check's absence is said in one line (not as an internal error)
    assert run.steps and "graph-accumulation" not in {f.kind for f in run.findings}
    (line,) = memwatch_lines(err)
    assert "_sequence_nr" in line and "graph-accumulation check is off" in line


def test_private_layer_base_classes_fall_back_to_the_public_layers() -> None:
    from memwatch.collect.loop import common, conv_shapes, probe

    # GIVEN torch.nn modules with and without the private base class
    with_it = types.SimpleNamespace(_ConvNd=nn.modules.conv._ConvNd)
    # WHEN the base is looked up, THEN the private class is used where it exists
    assert common.module_base(with_it, "_ConvNd", (nn.Conv2d,)) == (nn.modules.conv._ConvNd,)
    # AND the public layers it stands for where it does not (a non-class never counts)
    fallback = (nn.Conv1d, nn.Conv2d)
    assert common.module_base(types.SimpleNamespace(), "_ConvNd", fallback) == fallback
    assert common.module_base(types.SimpleNamespace(_ConvNd=None), "_ConvNd", fallback) == fallback
    # AND the classes memwatch checks against hold the layers on this torch
    assert isinstance(nn.Conv2d(1, 1, 1), conv_shapes._CONV)
    assert isinstance(nn.MSELoss(), probe._LOSS)
    assert isinstance(nn.Dropout(), common._STOCHASTIC)
    assert isinstance(nn.BatchNorm1d(2), common._STOCHASTIC)


def test_without_torchs_device_index_helper_a_users_fraction_counts_for_every_device(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memwatch.collect import cuda

    # GIVEN a torch without torch.cuda._utils._get_device_index, and a budget's watcher
    monkeypatch.delattr(torch.cuda._utils, "_get_device_index")
    calls = cuda.FractionCalls()
    calls.start()
    try:
        # WHEN the user sets a fraction on some device
        torch.cuda.set_per_process_memory_fraction(0.5, 1)
    finally:
        calls.stop()
    # THEN it is taken to be the user's on every device: the budget never overwrites it
    assert calls.user_set(0) and calls.user_set(1)


def test_without_the_memory_history_recorder_there_is_no_snapshot_api(
    fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memwatch.collect import snapshot

    monkeypatch.delattr(torch.cuda.memory, "_record_memory_history")
    assert snapshot.snapshot_api() is None
