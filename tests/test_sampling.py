"""Sampling with escalation (memwatch/collect/sampling.py): saved tensors are counted on
one step in k while nothing looks wrong, every step as soon as a cheap signal fires, and
no reader takes a step that was not counted for a step where nothing was saved."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.collect import holders_probe, sampling
from memwatch.collect.sampling import SavedSampling
from memwatch.collect.saved import SavedTensorHooks
from memwatch.records import MEASURED_SAVED, RunInfo, StepRecord
from memwatch.report.summary import summarize
from memwatch.store import RunReader, RunWriter
from tests import records


def _quiet_steps(policy: SavedSampling, n: int, duration: float, packs: int) -> list[bool]:
    """Feed ``n`` healthy step ends; which of the following steps the policy measures."""
    measured = True
    decisions = []
    for _ in range(n):
        cost = packs * sampling.PACK_COST_S if measured else 0.0
        measured = policy.step_end(measured, duration + cost, packs, 0, 100 << 20, None)
        decisions.append(measured)
    return decisions


# -- the policy ------------------------------------------------------------------------------
def test_a_short_step_saving_many_tensors_is_counted_on_a_stride() -> None:
    # GIVEN 0.5 ms steps that save 20 tensors each (counting costs ~16 % of a step)
    policy = SavedSampling()
    # WHEN 200 healthy steps end
    decisions = _quiet_steps(policy, 200, 0.5e-3, 20)
    # THEN the warm-up's first steps are counted and its calibration step is not, then
    #      about one step in `stride` is, within the budget
    calibration = sampling.CALIBRATION_STEP - 1
    assert all(decisions[: calibration - 1]) and not decisions[calibration - 1]
    later = decisions[100:]
    assert 1 < policy.stride <= sampling.MAX_STRIDE
    share = sum(later) / len(later) * 20 * sampling.PACK_COST_S / 0.5e-3
    assert share <= sampling.BUDGET * 1.5
    assert any(later) and not all(later)


def test_counting_that_costs_more_than_the_step_still_keeps_near_its_budget() -> None:
    # GIVEN 100 ms steps whose counting costs 150 ms more (an LSTM unrolled over a long
    #       sequence saves tens of thousands of small tensors)
    policy = SavedSampling()
    packs = round(0.150 / sampling.PACK_COST_S)
    # WHEN 400 healthy steps end
    decisions = _quiet_steps(policy, 400, 0.100, packs)
    # THEN the counted steps cost at most about the budget on average (a stride capped at
    #      32 had them take 4.7 % of the run)
    later = decisions[200:]
    share = sum(later) / len(later) * 0.150 / 0.100
    assert any(later)
    assert share <= sampling.BUDGET * 1.25, f"counting took {share:.1%} of the steps"


def test_a_long_step_saving_few_tensors_is_counted_every_step() -> None:
    # GIVEN 50 ms steps that save 20 tensors (counting costs 0.16 % of a step)
    policy = SavedSampling()
    # WHEN 100 healthy steps end
    decisions = _quiet_steps(policy, 100, 50e-3, 20)
    # THEN every step is counted but the warm-up's calibration step
    calibration = sampling.CALIBRATION_STEP - 1
    assert not decisions[calibration - 1]
    assert all(decisions[: calibration - 1] + decisions[calibration:]) and policy.stride == 1


def test_expensive_counting_ends_the_warm_up_at_its_calibration_step() -> None:
    # GIVEN 100 ms steps whose counting costs 150 ms more (a long LSTM unroll)
    policy = SavedSampling()
    packs = round(0.150 / 24e-6)  # ~24 µs per saved tensor in such a step
    # WHEN the first 16 steps end (the first is counted from the start of the watch)
    measured, counted = True, [True]
    for _ in range(16):
        cost = 0.150 if measured else 0.0
        measured = policy.step_end(measured, 0.100 + cost, packs, 0, 100 << 20, None)
        counted.append(measured)
    # THEN only the steps before the calibration step were counted: eight counted steps
    #      would cost a 15-step LBFGS run 12 steps' time
    first = sampling.CALIBRATION_STEP - 1
    assert all(counted[:first]) and not any(counted[first:])


@pytest.mark.parametrize(
    ("step_s", "extra_s", "packs", "warm"),
    [
        (0.023, 0.017, 1400, False),  # an episode of 200 batch-1 forwards: +74 %, 17 ms
        (0.5e-3, 0.15e-3, 11, True),  # a tiny MLP: +30 %, but 0.15 ms and 11 tensors
        (0.5e-3, 0.03, 11, True),  # the same, its first steps slowed by a busy machine
    ],
    ids=["episode-of-small-forwards", "tiny-step", "tiny-step-noisy-machine"],
)
def test_the_warm_up_goes_on_only_while_its_counted_steps_cost_little_in_all(
    step_s: float, extra_s: float, packs: int, warm: bool
) -> None:
    # GIVEN steps whose counting costs more than WARMUP_MAX_SHARE of the step
    policy = SavedSampling()
    # WHEN the warm-up's steps end
    measured, counted = True, [True]
    for _ in range(sampling.WARMUP_STEPS):
        cost = extra_s if measured else 0.0
        measured = policy.step_end(measured, step_s + cost, packs, 0, 100 << 20, None)
        counted.append(measured)
    # THEN the warm-up's remaining steps are counted only where, together, they cost
    #      little time and save few tensors (a counted step's objects also bring the
    #      collector's next full collection forward, ~0.2 s with torch loaded: the time it
    #      shows is not all of its cost)
    after = counted[sampling.CALIBRATION_STEP : sampling.WARMUP_STEPS]
    assert all(after) if warm else not any(after)


def test_the_first_backward_restarts_the_warm_up_without_the_partial_step() -> None:
    # GIVEN a policy that counted 200 forward-only steps saving 20 tensors each (an RL
    #       episode before the run's first backward), each signalling unused graphs
    policy = SavedSampling()
    for _ in range(200):
        policy.note_evidence("forward-without-backward")
        policy.step_end(True, 0.5e-3, 20, 0, 100 << 20, None, training_step=False)
    # WHEN the first backward comes in the step running, which ends having counted only
    #      its last segment, and the next steps are 100 ms steps whose counting costs
    #      150 ms more (an RL episode of long unrolls)
    policy.calm()
    after_partial = policy.step_end(True, 0.5e-3, 20, 0, 100 << 20, None)
    measured, counted = after_partial, [after_partial]
    for _ in range(12):
        cost = 0.150 if measured else 0.0
        measured = policy.step_end(measured, 0.100 + cost, 6_000, 0, 100 << 20, None)
        counted.append(measured)
    # THEN the first full training steps are counted (the partial step taught nothing),
    #      the calibration step is not, and the expensive counting is then sampled
    first = sampling.CALIBRATION_STEP - 1
    assert all(counted[:first]) and not any(counted[first:])
    assert policy.stride > 1


@pytest.mark.parametrize(
    "signal",
    ["saved alive", "evidence", "escalate"],
)
def test_a_cheap_signal_makes_every_following_step_counted(signal: str) -> None:
    # GIVEN a policy sampling a quiet run
    policy = SavedSampling()
    _quiet_steps(policy, 100, 0.5e-3, 20)
    assert policy.stride > 1
    # WHEN a signal fires at one step end
    if signal == "saved alive":
        policy.step_end(True, 0.5e-3, 20, 4096, 100 << 20, None)
    elif signal == "evidence":
        policy.note_evidence("graph-accumulation")
        policy.step_end(False, 0.5e-3, 20, None, 100 << 20, None)
    else:
        policy.escalate("a probe asked")
        policy.step_end(False, 0.5e-3, 20, None, 100 << 20, None)
    # THEN the next steps are all counted
    assert all(policy.step_end(True, 0.5e-3, 20, 0, 100 << 20, None) for _ in range(10))


@pytest.mark.parametrize("kept", [False, True], ids=["nothing-kept", "graph-kept"])
def test_a_memory_rise_is_answered_by_counted_steps(kept: bool) -> None:
    # GIVEN a policy sampling a quiet run
    policy = SavedSampling()
    _quiet_steps(policy, 100, 0.5e-3, 20)
    # WHEN host memory rises above its high-water mark at one step end
    rise = (100 << 20) + sampling.RISE_BYTES
    assert policy.step_end(False, 0.5e-3, 20, None, rise, None)
    # THEN the next step is counted, to see whether autograd keeps what rose
    alive = 4096 if kept else 0
    following, counted = [], True
    for _ in range(10):  # each step counted or not as the policy decided
        counted = policy.step_end(counted, 0.5e-3, 20, alive if counted else None, rise, None)
        following.append(counted)
    if kept:
        # AND a graph alive at its end keeps every following step counted
        assert all(following)
    else:
        # AND when nothing is alive at its end, counting goes back to its stride (a healthy
        #     RL run whose episodes grow set new highs all along), while the other checks
        #     stay hurried for the escalation's steps
        assert not all(following) and not policy.counts_everything
        assert policy.escalated


def test_routine_evidence_is_no_signal() -> None:
    # GIVEN a sampling policy in a quiet run (an RL loop: unbatched forwards every step)
    policy = SavedSampling()
    _quiet_steps(policy, 100, 0.5e-3, 20)
    # WHEN routine evidence arrives
    policy.note_evidence("unbatched-forwards")
    # THEN nothing escalates
    assert not policy.escalated


def test_deep_mode_counts_every_step() -> None:
    # GIVEN a policy with sampling off (analysis="deep")
    policy = SavedSampling(enabled=False)
    # THEN every step is counted however costly
    assert all(_quiet_steps(policy, 100, 0.5e-3, 200))


# -- in a watched loop -------------------------------------------------------------------------
def _mlp() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 4))
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def _train(model: nn.Module, opt: torch.optim.Optimizer) -> torch.Tensor:
    loss = model(torch.randn(64, 16)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def _problems(mw: Any) -> list[str]:
    return [f.kind for f in mw.findings if f.severity in ("error", "warning")]


#: A leak starting here starts well after the warm-up, while sampling is on.
LATE = 48


@pytest.mark.parametrize("checks", ["every-step-end", "every-other-step-end"])
@pytest.mark.parametrize(
    "leak",
    ["eval-forward-kept", "loss-summed", "losses-appended", "detach-dropped", "retain-graph"],
)
def test_a_leak_starting_while_sampling_is_reported_by_step_k_plus_5(
    leak: str, checks: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the holders probe's quiet checks (glance, light graph check) at every step end,
    #       or at every other one (as on steps so short that they cost more than
    #       QUIET_SHARE of the step)
    monkeypatch.setattr(holders_probe, "QUIET_SHARE", 1e9 if checks == "every-step-end" else 0.0)
    # AND sampling at its longest stride once the warm-up is over, whatever this machine's
    #     speed (a loaded machine's slow steps make counting cheap for their length, and
    #     a budget that affords every step would test no sampling at all; CI saw this)
    monkeypatch.setattr(sampling, "BUDGET", 1e-9)
    # AND a healthy loop, watched in the default mode, that starts leaking at step LATE
    model, opt = _mlp()
    encoder = nn.Sequential(nn.Linear(16, 256), nn.ReLU())
    head = nn.Linear(256, 4)
    head_opt = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.01)
    kept: list[torch.Tensor] = []
    seen_at = None
    counted_before: list[bool] = []
    with memwatch(store=False) as mw:
        total: Any = 0.0
        losses: list[Any] = []
        context = torch.zeros(32, 256)
        for i in range(LATE + 8):
            if leak == "retain-graph":
                features = encoder(torch.randn(32, 16))
                carried = context if i > LATE else context.detach()  # the chain starts
                context = 0.9 * carried + 0.1 * features
                loss = head(context).pow(2).mean()
                head_opt.zero_grad()
                loss.backward(retain_graph=i >= LATE)
                head_opt.step()
            else:
                loss = _train(model, opt)
            if i >= LATE and leak == "eval-forward-kept":
                model.eval()
                kept.append(model(torch.randn(64, 16)))
                model.train()
            elif i >= LATE and leak == "loss-summed":
                total = total + loss
            elif leak == "losses-appended":  # a healthy list of floats, then the tensors
                losses.append(loss if i >= LATE else loss.item())
            elif leak == "detach-dropped":  # a running average that carried a graph all
                # along (detached each step), until the detach() goes away
                total = (total if i >= LATE else torch.as_tensor(total).detach()) * 0.9 + loss
            # WHEN we look at the findings after every step
            if i < LATE:
                assert _problems(mw) == [], f"false alarm at healthy step {i}"
            elif seen_at is None and _problems(mw):
                seen_at = i
        counted_before = [
            s.saved_measured for s in mw.steps if sampling.WARMUP_STEPS + 8 <= s.step < LATE
        ]
    # THEN sampling was on before the leak (some steps were not counted) ...
    assert counted_before and not all(counted_before)
    # ... and the leak is still reported within five steps of its start
    assert seen_at is not None and seen_at <= LATE + 5, f"leak from {LATE} seen at {seen_at}"


def test_a_healthy_run_stores_which_steps_were_counted(tmp_path: Path) -> None:
    # GIVEN a healthy loop of 60 steps watched in the default mode, with a run file
    model, opt = _mlp()
    out = tmp_path / "run.db"
    with memwatch(out=out):
        for _ in range(60):
            _train(model, opt)
    # WHEN the run file is read back
    with RunReader(out) as reader:
        steps = reader.steps()
    counted = [s for s in steps if s.saved_measured]
    skipped = [s for s in steps if not s.saved_measured]
    # THEN the warm-up steps were counted (but its calibration step), later ones
    #      sampled, and each step says which
    calibration = sampling.CALIBRATION_STEP - 1
    warm = steps[: sampling.WARMUP_STEPS]
    assert all(s.saved_measured for i, s in enumerate(warm) if i != calibration)
    assert not warm[calibration].saved_measured
    assert counted and skipped
    assert all(s.measured is not None and s.measured & MEASURED_SAVED for s in counted)
    assert all(
        s.saved_bytes is None and s.saved_peak_bytes is None and s.saved_stale_bytes is None
        for s in skipped
    )
    assert all(s.measured is not None and not s.measured & MEASURED_SAVED for s in skipped)


def test_deep_mode_counts_saved_tensors_on_every_step() -> None:
    # GIVEN a loop watched with analysis="deep"
    model, opt = _mlp()
    with memwatch(store=False, analysis="deep") as mw:
        for _ in range(60):
            _train(model, opt)
        steps = list(mw.steps)
    # THEN every step's saved tensors were counted
    assert steps and all(s.saved_measured for s in steps)


#: Passes of the closure per LBFGS step (no tolerance: LBFGS never stops early).
PASSES = 5


def _count_packs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter of the saved tensors memwatch's hooks count from now on (``[n]``)."""
    packs = [0]
    pack = SavedTensorHooks.pack

    def counting_pack(self: SavedTensorHooks, tensor: Any) -> Any:
        packs[0] += self.enabled
        return pack(self, tensor)

    monkeypatch.setattr(SavedTensorHooks, "pack", counting_pack)
    return packs


def _lbfgs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, passes: int, calls: list[int] | None = None
) -> tuple[torch.optim.Optimizer, Any]:
    """An LBFGS optimizer that runs its closure (a forward and backward of ``model``)
    ``passes`` times a step, and that closure (counting its calls in ``calls``)."""
    opt = torch.optim.LBFGS(
        model.parameters(), max_iter=passes, max_eval=passes, tolerance_grad=0, tolerance_change=0
    )

    def closure() -> torch.Tensor:
        if calls is not None:
            calls[0] += 1
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        return loss

    return opt, closure


def _lbfgs_step_packs(
    monkeypatch: pytest.MonkeyPatch, signal: bool = False, **watch: Any
) -> tuple[int, int, StepRecord]:
    """The second ``LBFGS.step(closure)`` (``PASSES`` passes) of a fresh watch (counted:
    the warm-up's): the closure's calls, the saved tensors memwatch's hooks counted, and
    the step's record. ``signal``: something looked wrong before it (``escalate``; the
    run's first backward voids what came before it)."""
    packs = _count_packs(monkeypatch)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 1))
    calls = [0]
    opt, closure = _lbfgs(model, torch.randn(32, 16), torch.randn(32, 1), PASSES, calls)
    with memwatch(store=False, **watch) as mw:
        opt.step(closure)
        calls[0] = packs[0] = 0
        if signal:
            mw._tracker.escalate("a test signal")
        opt.step(closure)
        record = mw.steps[1]
    return calls[0], packs[0], record


def test_a_step_that_reruns_its_closure_counts_its_first_pass_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN an LBFGS step whose closure (a forward and backward) runs five times, alike
    # WHEN it is counted (a step of the warm-up), in a watch and in a deep watch
    calls, packs, record = _lbfgs_step_packs(monkeypatch)
    deep_calls, deep_packs, deep_record = _lbfgs_step_packs(monkeypatch, analysis="deep")
    # THEN the default watch counts the first pass's saved tensors only (pytorch/examples'
    #      time_sequence_prediction: 620,000 packs a step cost ×1.3), the deep one all
    assert calls == deep_calls == PASSES
    assert packs > 0 and deep_packs == PASSES * packs
    # AND the step is still a counted one, with the peak that every pass reaches
    assert record.saved_measured and record.measured & MEASURED_SAVED
    assert record.saved_peak_bytes == deep_record.saved_peak_bytes > 0


def test_a_second_closure_in_the_same_step_counts_its_first_pass_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a loop that marks its steps by hand (`mw.step()`) and steps two LBFGS
    #       optimizers in each, each with a closure of three passes over its own model
    packs = _count_packs(monkeypatch)
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)), nn.Linear(8, 1)]
    x, y = torch.randn(16, 8), torch.randn(16, 1)

    def one_pass_packs(model: nn.Module) -> int:
        opt, closure = _lbfgs(model, x, y, 1)
        with memwatch(store=False, analysis="deep"):
            packs[0] = 0
            opt.step(closure)
            return packs[0]

    first, second = (one_pass_packs(m) for m in models)
    assert first != second
    steppers = [_lbfgs(m, x, y, 3) for m in models]
    # WHEN a step of the watch's warm-up (counted) runs both
    with memwatch(store=False) as mw:
        for _ in range(2):
            packs[0] = 0
            for opt, closure in steppers:
                opt.step(closure)
            mw.step()
        record = mw.steps[1]
    # THEN it counted the first pass of each closure, and no later pass
    assert record.saved_measured
    assert packs[0] == first + second


def test_a_step_that_reruns_its_closure_after_a_signal_counts_every_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the same LBFGS step, after a signal (something may be kept: sampling.py)
    calls, packs, _ = _lbfgs_step_packs(monkeypatch)
    # WHEN it runs
    _, escalated_packs, record = _lbfgs_step_packs(monkeypatch, signal=True)
    # THEN every pass is counted, as on every step while escalated
    assert escalated_packs == calls * packs
    assert record.saved_measured


# -- readers never take an uncounted step for zero ---------------------------------------------
def test_the_summary_ignores_steps_that_were_not_counted() -> None:
    # GIVEN steps saving 5 MiB at their peak, the last one not counted
    steps = [
        records.make_step(0, saved_bytes=0, saved_peak_bytes=5 * records.MiB),
        records.make_step(1, saved_bytes=1024, saved_peak_bytes=5 * records.MiB),
        records.make_step(
            2, saved_bytes=None, saved_peak_bytes=None, saved_stale_bytes=None, measured=2
        ),
    ]
    # WHEN they are summarised
    summary = summarize(steps)
    # THEN the peak and the final value come from counted steps, not from a made-up zero
    assert summary.peak_autograd_saved_bytes == 5 * records.MiB
    assert summary.final_autograd_saved_bytes == 1024


def _info() -> RunInfo:
    return RunInfo("r1", "t.py", ("t.py",), 1000.0, "3.11", "2.13", "cpu", "cpu", None, 1, "h")


def test_an_uncounted_step_survives_the_run_file(tmp_path: Path) -> None:
    # GIVEN a counted step and an uncounted one written to a run file
    path = tmp_path / "run.db"
    writer = RunWriter(path, _info())
    counted = records.make_step(0, saved_bytes=10, measured=3)
    uncounted = records.make_step(
        1, saved_bytes=None, saved_peak_bytes=None, saved_stale_bytes=None, measured=2
    )
    writer.add_step(counted)
    writer.add_step(uncounted)
    writer.close(_info())
    # WHEN it is read back
    with RunReader(path) as reader:
        back: list[StepRecord] = reader.steps()
    # THEN both come back as written
    assert back == [counted, uncounted]


def test_a_run_file_from_before_sampling_reads_as_all_measured(tmp_path: Path) -> None:
    # GIVEN a run file whose steps table has no `measured` column (schema 1.3)
    path = tmp_path / "run.db"
    writer = RunWriter(path, _info())
    writer.add_step(records.make_step(0, saved_bytes=10))
    writer.close(_info())
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE steps DROP COLUMN measured")
    conn.commit()
    conn.close()
    # WHEN it is read
    with RunReader(path) as reader:
        steps = reader.steps()
    # THEN its step reads back with everything measured
    assert len(steps) == 1 and steps[0].measured is None
    assert steps[0].saved_measured and steps[0].every_forward_seen
    assert steps[0].saved_bytes == 10


def test_the_first_backward_calms_what_the_forward_only_steps_signalled() -> None:
    # GIVEN a policy that has seen 200 forward-only steps whose unused graphs were signals
    #       (an RL episode before the run's first backward), each escalating
    policy = SavedSampling()
    for _ in range(200):
        policy.note_evidence("forward-without-backward")
        policy.step_end(True, 0.5e-3, 20, 0, 100 << 20, None, training_step=False)
    assert policy.escalated
    # WHEN the first backward comes, and the first training steps allocate 8 MiB more
    policy.calm()
    counted = [
        policy.step_end(True, 0.5e-3, 200, 0, (100 << 20) + (8 << 20) * (i == 0), None)
        for i in range(sampling.ESCALATED_STEPS - 1)
    ]
    # THEN neither keeps every step counted: sampling starts at once
    assert not policy.escalated
    assert not all(counted)


def test_a_memory_rise_in_the_warm_up_does_not_escalate() -> None:
    # GIVEN a watched loop in its first steps (which allocate what training keeps: the
    #       optimizer's state, the allocator's first blocks, memwatch's own counting)
    model, opt = _mlp()
    with memwatch(store=False) as mw:
        tracker = mw._tracker
        for _ in range(2):
            _train(model, opt)
        # WHEN a probe reports a memory rise (a census ran on RSS growth)
        tracker.escalate("a census on rss", memory=True)
        # THEN it is no signal yet: a census that escalated here had 16 steps of an
        #      expensive loop counted
        assert not tracker.escalated
        # AND once the warm-up is over, the same rise is one
        for _ in range(sampling.WARMUP_STEPS + 2):
            _train(model, opt)
        tracker.escalate("a census on rss", memory=True)
        assert tracker.escalated


def test_a_retain_graph_backward_after_an_answered_memory_rise_counts_every_step() -> None:
    # GIVEN a watched loop past its warm-up, whose memory rise a counted step has answered
    #       (nothing saved alive at its end: the other checks stay hurried)
    model, opt = _mlp()
    with memwatch(store=False) as mw:
        tracker = mw._tracker
        for _ in range(sampling.WARMUP_STEPS + 4):
            _train(model, opt)
        tracker.escalate("a census on rss", memory=True)
        for _ in range(2):
            _train(model, opt)
        assert tracker.escalated and not tracker.sampling.counts_everything
        # WHEN a backward keeps its graph
        loss = model(torch.randn(64, 16)).pow(2).mean()
        opt.zero_grad()
        loss.backward(retain_graph=True)
        opt.step()
        # THEN that signal counts every step again, as it does on its own
        assert tracker.sampling.counts_everything
