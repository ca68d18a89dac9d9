"""The watch around a training loop: steps, counters, and never changing the program."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import memwatch.session as session_module
from memwatch import memwatch
from memwatch.collect.probe import Probe
from memwatch.errors import MemwatchError
from memwatch.store import RunReader


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4))


def train(steps: int = 12) -> tuple[list[float], list[torch.Tensor]]:
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.randn(8, 16, generator=gen)
        y = torch.randint(0, 4, (8,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()]


def test_losses_and_weights_are_identical_with_and_without_the_watch(tmp_path: Path) -> None:
    # GIVEN a seeded training run without memwatch
    plain_losses, plain_params = train()
    # WHEN the same run happens inside a watch
    with memwatch(out=tmp_path / "r.db") as mw:
        watched_losses, watched_params = train()
    # THEN every loss and every weight is bit-identical, and 12 steps were recorded
    assert watched_losses == plain_losses
    assert all(torch.equal(a, b) for a, b in zip(plain_params, watched_params))
    assert mw.step_count == 12
    assert [s.boundary for s in mw.steps] == ["optimizer"] * 12


def test_steps_record_counters_saved_bytes_and_rss(tmp_path: Path) -> None:
    # GIVEN / WHEN a watched run of 5 steps
    with memwatch(out=tmp_path / "r.db"):
        train(steps=5)
    # THEN each step saw one forward and one backward, autograd saved something
    # during each counted step (all but the warm-up's calibration step) and nothing at
    # its end, and RSS was read; no CUDA zeros on CPU
    with RunReader(tmp_path / "r.db") as reader:
        steps = reader.steps()
        info = reader.info()
    assert len(steps) == 5
    assert [s.saved_measured for s in steps].count(False) == 1
    for s in steps:
        assert (s.forward_calls, s.backward_calls) == (1, 1)
        if s.saved_measured:
            assert s.saved_peak_bytes is not None and s.saved_peak_bytes > 0
            assert s.saved_bytes == 0
        assert s.rss_bytes is not None and s.rss_bytes > 10_000_000
        if not torch.cuda.is_available():
            assert s.allocated_bytes is None and s.reserved_bytes is None
    assert info.exit_status is None and info.ended_at is not None


def test_inplace_modification_error_is_still_raised() -> None:
    # GIVEN a graph whose saved output is modified in place before backward
    def broken() -> None:
        x = torch.randn(4, requires_grad=True)
        y = x.sigmoid()
        y.mul_(2)
        y.sum().backward()

    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        broken()
    # WHEN the same happens under the watch / THEN autograd's error still fires
    with memwatch(store=False), pytest.raises(RuntimeError, match="modified by an inplace"):
        broken()


def test_torch_func_grad_works_under_the_watch() -> None:
    # GIVEN torch.func.grad, which refuses to run under saved-tensor hooks
    def f(x: torch.Tensor) -> torch.Tensor:
        return (x.sin() * x).sum()

    x = torch.randn(5)
    expected = torch.func.grad(f)(x)
    # WHEN called inside a watch / THEN it works and gives the same gradient
    with memwatch(store=False):
        got = torch.func.grad(f)(x)
        train(steps=2)  # and the watch keeps counting afterwards
    assert torch.equal(got, expected)


def test_torch_compile_under_the_watch_raises_no_warning_about_memwatchs_hooks() -> None:
    # GIVEN a compiled model and warnings turned into errors (python -W error)
    torch._dynamo.reset()
    model = torch.compile(make_model(), backend="eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # WHEN it trains inside a watch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with memwatch(store=False) as mw:
            for _ in range(2):
                opt.zero_grad()
                model(torch.randn(8, 16)).sum().backward()
                opt.step()
        filters_after = list(warnings.filters)
        # THEN torch's warning about global hooks (memwatch's) never reached the program,
        # and the watch took its filter out again when it stopped
        assert mw.step_count == 2
        assert filters_after[0][0] == "error"
        with pytest.raises(UserWarning, match="global hooks"):
            handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
            try:
                model(torch.randn(8, 16))
            finally:
                handle.remove()
    torch._dynamo.reset()


def test_torch_compile_keeps_one_graph_under_the_watch() -> None:
    # GIVEN a compiled model with a backend that counts the graphs dynamo hands it
    graphs: list[object] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> object:
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    model = torch.compile(make_model(), backend=counting_backend)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # WHEN it trains inside a watch
    with memwatch(store=False) as mw:
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 16)).sum().backward()
            opt.step()
    # THEN dynamo produced one graph (no graph breaks from memwatch's hooks) and steps count
    assert len(graphs) == 1
    assert mw.step_count == 3
    torch._dynamo.reset()


class _Doubler(torch.utils.data.Dataset):  # type: ignore[type-arg]
    layer = nn.Linear(2, 2)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        self.layer(torch.ones(1, 2))  # a module forward inside the worker
        watch = session_module._ACTIVE
        tracker_off = watch is not None and watch._tracker.off
        return torch.tensor(float(tracker_off))


def test_forked_dataloader_workers_neither_hook_nor_write(tmp_path: Path) -> None:
    # GIVEN a DataLoader with two forked workers whose dataset runs a module forward
    loader = torch.utils.data.DataLoader(
        _Doubler(), batch_size=2, num_workers=2, multiprocessing_context="fork"
    )
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # WHEN the parent trains on it inside a watch
    with memwatch(out=tmp_path / "r.db") as mw:
        flags = []
        for batch in loader:
            flags.append(batch)
            opt.zero_grad()
            model(torch.randn(2, 16)).sum().backward()
            opt.step()
    # THEN in every worker memwatch's tracker was off, and the parent's file is intact
    assert torch.cat(flags).tolist() == [1.0] * 8
    assert mw.step_count == 4
    with RunReader(tmp_path / "r.db") as reader:
        assert [s.step for s in reader.steps()] == [0, 1, 2, 3]
        assert reader.info().ended_at is not None


def test_manual_sgd_without_optimizer_counts_a_step_per_iteration() -> None:
    # GIVEN a loop that updates weights by hand (no optimizer hook ever fires)
    model = make_model()
    with memwatch(store=False) as mw:
        for _ in range(6):
            model(torch.randn(4, 16)).sum().backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.01 * p.grad
                    p.grad = None
    # THEN each forward-after-backward starts a new step: 6 steps
    assert mw.step_count == 6
    assert {s.boundary for s in mw.steps} == {"forward", "end"}


def test_inference_only_loop_counts_root_forwards() -> None:
    model = make_model().eval()
    with memwatch(store=False) as mw, torch.no_grad():
        for _ in range(5):
            model(torch.randn(4, 16))
    assert mw.step_count == 5
    assert all(s.forward_calls == 1 and s.backward_calls == 0 for s in mw.steps)


def test_two_optimizers_in_one_loop_do_not_double_count() -> None:
    # GIVEN a GAN-like loop with two optimizers stepping every iteration
    gen, disc = make_model(), make_model()
    opt_g = torch.optim.SGD(gen.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(disc.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for _ in range(4):
            opt_g.zero_grad()
            opt_d.zero_grad()
            (gen(torch.randn(4, 16)).sum() + disc(torch.randn(4, 16)).sum()).backward()
            opt_g.step()
            opt_d.step()
    # THEN one step per iteration
    assert mw.step_count == 4


def test_lbfgs_closure_is_one_step_per_optimizer_call() -> None:
    model = make_model()
    opt = torch.optim.LBFGS(model.parameters(), max_iter=5)
    x = torch.randn(8, 16)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    with memwatch(store=False) as mw:
        for _ in range(3):
            opt.step(closure)
    assert mw.step_count == 3
    assert all(s.forward_calls >= 2 for s in mw.steps)


def test_grad_scaler_skipped_step_still_ends_a_step() -> None:
    # GIVEN a GradScaler loop whose gradients overflow on one iteration
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    with memwatch(store=False) as mw:
        for i in range(4):
            opt.zero_grad()
            loss = model(torch.randn(4, 16)).sum()
            if i == 1:
                loss = loss * float("inf")  # inf gradients: scaler.step skips opt.step
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    # THEN all four iterations are steps, the skipped one ended by the scaler
    assert mw.step_count == 4
    assert [s.boundary for s in mw.steps] == ["optimizer", "scaler", "optimizer", "optimizer"]


def test_manual_step_marking_takes_over() -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False, manual_steps=True) as mw:
        for _ in range(3):
            for _ in range(2):  # two optimizer steps per "step" as the user defines it
                opt.zero_grad()
                model(torch.randn(4, 16)).sum().backward()
                opt.step()
            mw.step()
    assert [s.boundary for s in mw.steps] == ["manual", "manual", "manual"]
    assert all(s.forward_calls == 2 for s in mw.steps)


def test_a_failing_probe_is_switched_off_with_one_notice_even_under_warnings_as_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a probe that raises on every step end
    class Broken(Probe):
        name = "broken"
        calls = 0

        def on_step_end(self, tracker: object, record: object, frames: object) -> None:
            Broken.calls += 1
            raise ValueError("bug in memwatch")

    import memwatch.collect.probes as probes

    original = probes.default_probes
    monkeypatch.setattr(probes, "default_probes", lambda w: [*original(w), Broken()])
    # WHEN training runs under the watch, with warnings turned into errors (python -W error)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with memwatch(store=False) as mw:
            losses, _ = train(steps=4)
    # THEN training finished, steps were recorded, the probe ran once and said so once,
    # on stderr: memwatch's own notice never became an exception in the user's code
    assert len(losses) == 4 and mw.step_count == 4
    assert Broken.calls == 1
    assert capsys.readouterr().err.count("broken probe switched off") == 1


def test_oom_raised_and_caught_is_recorded_as_an_event() -> None:
    with memwatch(store=False) as mw:
        train(steps=1)
        try:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        except torch.OutOfMemoryError:
            pass
        train(steps=1)
    ooms = [e for e in mw.events if e.kind == "oom"]
    assert len(ooms) == 1
    assert ooms[0].data["requested_bytes"] == 2 * 1024**3
    assert ooms[0].location is not None and ooms[0].location.file.endswith("test_session.py")
    assert sum(s.oom_events for s in mw.steps) == 1


def test_only_one_watch_at_a_time_and_hooks_are_gone_after() -> None:
    before = len(torch.nn.modules.module._global_forward_hooks)
    with memwatch(store=False), pytest.raises(MemwatchError, match="already active"):
        memwatch(store=False).start()
    assert len(torch.nn.modules.module._global_forward_hooks) == before
    assert torch.autograd.graph.disable_saved_tensors_hooks.__module__ == "torch.autograd.graph"
    assert torch._C._autograd._top_saved_tensors_default_hooks(False) is None


def test_importing_memwatch_does_not_import_torch() -> None:
    code = "import sys, memwatch, memwatch.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unsupported_torch_versions_are_refused_with_a_clear_message() -> None:
    from memwatch.collect.environment import check_torch_version

    check_torch_version("2.13.0+cpu")
    with pytest.raises(MemwatchError, match=r"memwatch needs torch >= 2\.4; .* torch 1\.13\.1"):
        check_torch_version("1.13.1")


def test_an_uncaught_oom_in_a_script_is_recorded_and_exits_1(tmp_path: Path) -> None:
    # GIVEN a script that dies of an OOM it does not catch
    script = tmp_path / "dies.py"
    script.write_text(
        "import torch\n"
        "model = torch.nn.Linear(4, 4)\n"
        "model(torch.randn(2, 4)).sum().backward()\n"
        "raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 512.00 MiB')\n"
    )
    # WHEN run under memwatch
    proc = subprocess.run(
        [sys.executable, "-m", "memwatch", "run", "--out", str(tmp_path / "r.db"), str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    # THEN the script's error shows, exit 1, and the run file holds the OOM and the step
    assert proc.returncode == 1
    assert "torch.OutOfMemoryError: CUDA out of memory" in proc.stderr
    with RunReader(tmp_path / "r.db") as reader:
        ooms = reader.events("oom")
        assert reader.info().exit_status == 1
        assert reader.step_count() == 1
    assert len(ooms) == 1 and ooms[0].data["requested_bytes"] == 512 * 1024**2
    assert ooms[0].location is not None and ooms[0].location.line == 4


def test_a_watch_that_cannot_start_warns_once_and_the_program_runs_unwatched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a tracker whose start fails half-way (after installing some hooks)
    from memwatch.collect.tracker import Tracker

    real_start = Tracker.start

    def failing_start(self: Tracker) -> None:
        real_start(self)
        raise OSError("simulated internal failure")

    monkeypatch.setattr(Tracker, "start", failing_start)
    before = len(torch.nn.modules.module._global_forward_hooks)
    # WHEN training runs inside the watch, with warnings turned into errors
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with memwatch(out=tmp_path / "r.db", track_tensors=True) as mw:
            losses, _ = train(steps=3)
    assert capsys.readouterr().err.count("memwatch: could not start") == 1
    # THEN training ran normally, nothing was recorded, and no hook was left behind
    assert len(losses) == 3
    assert mw.step_count == 0 and not mw.active
    assert len(torch.nn.modules.module._global_forward_hooks) == before
    assert torch._C._autograd._top_saved_tensors_default_hooks(False) is None
    assert session_module._ACTIVE is None


def test_micro_batches_before_the_first_backward_stay_one_step() -> None:
    # GIVEN gradient accumulation: four forwards, then one backward and one optimizer step
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with memwatch(store=False) as mw:
        for _ in range(3):
            opt.zero_grad()
            losses = [model(torch.randn(4, 16)).sum() for _ in range(4)]
            sum(losses).backward()
            opt.step()
    # THEN the first iteration is one step like the others, not four
    assert mw.step_count == 3
    assert [s.forward_calls for s in mw.steps] == [4, 4, 4]
    assert [s.boundary for s in mw.steps] == ["optimizer"] * 3


def test_long_inference_loops_emit_steps_while_running() -> None:
    # GIVEN an inference loop longer than the confirmation window
    from memwatch.collect.tracker import FORWARD_ONLY_CONFIRM

    model = make_model().eval()
    with memwatch(store=False) as mw, torch.no_grad():
        for i in range(FORWARD_ONLY_CONFIRM + 10):
            model(torch.randn(2, 16))
            if i == FORWARD_ONLY_CONFIRM + 5:
                # THEN once confirmed as inference, steps arrive as they happen
                assert mw.step_count == FORWARD_ONLY_CONFIRM + 5
    assert mw.step_count == FORWARD_ONLY_CONFIRM + 10
    assert [s.step for s in mw.steps] == list(range(FORWARD_ONLY_CONFIRM + 10))


def test_events_during_provisional_forward_steps_get_their_final_step_numbers() -> None:
    # GIVEN forward-only iterations (no backward yet), each raising and catching an OOM
    model = make_model()
    with memwatch(store=False) as mw:
        for _ in range(3):
            model(torch.randn(2, 16))
            try:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 MiB")
            except torch.OutOfMemoryError:
                pass
    # THEN each OOM event carries the step it happened in, matching the step records
    assert [e.step for e in mw.events if e.kind == "oom"] == [0, 1, 2]
    assert [s.oom_events for s in mw.steps] == [1, 1, 1]


def test_second_order_gradients_are_unchanged_under_the_watch() -> None:
    # GIVEN a double backward through saved outputs (exp, sigmoid)
    def second_order() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.tensor([0.5, 1.5, -2.0], requires_grad=True)
        y = (x.exp() * x.sigmoid()).sum()
        (g,) = torch.autograd.grad(y, x, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), x)
        return g.detach(), h

    expected = second_order()
    # WHEN it runs inside a watch / THEN first and second derivatives are identical
    with memwatch(store=False):
        got = second_order()
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
