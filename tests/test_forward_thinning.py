"""Root forwards handed to the probes, thinned within long steps (collect/tracker.py ``_thin``).

A step of hundreds of root forwards (an RL episode of batch-1 policy calls, an LSTM cell
unrolled by hand) would pay every probe's forward hooks hundreds of times. On steps that do
not count saved tensors, the probes see each kind of forward (module, grad mode, train mode)
in full a few times, then one in ``FORWARD_THIN_EVERY`` standing for that many. These
stories check that what is counted stays right and that a new kind of forward (an
evaluation pass) is still seen at once.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.collect import probes as probes_module
from memwatch.collect import tracker as tracker_module
from memwatch.collect.probe import Probe, ProbeHost

EPISODE = 200
# The run's first episode comes before any backward: the step machine cuts it at root
# forwards until the backward merges them (collect/steps.py), so its step numbers are
# provisional while the probes see them; every story looks at later steps only.


class _Seen(Probe):
    """Counts the root forwards it is handed, per step, weighted and not."""

    name = "seen"

    def __init__(self) -> None:
        self.handed: dict[int, int] = {}
        self.weighted: dict[int, int] = {}
        self.eval_handed: dict[int, int] = {}

    def on_root_forward_pre(self, tracker: ProbeHost, module: Any, args: Any) -> None:
        step = tracker.step
        self.handed[step] = self.handed.get(step, 0) + 1
        self.weighted[step] = self.weighted.get(step, 0) + tracker.forward_weight
        if not torch.is_grad_enabled():
            self.eval_handed[step] = self.eval_handed.get(step, 0) + 1


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> _Seen:
    probe = _Seen()
    original = probes_module.default_probes
    monkeypatch.setattr(probes_module, "default_probes", lambda o: [*original(o), probe])
    return probe


def _episode_step(policy: nn.Module, opt: torch.optim.Optimizer, evaluate: int = 0) -> None:
    states = torch.randn(EPISODE, 1, 4)
    log_probs = [policy(states[t]).log_softmax(-1)[0, 0] for t in range(EPISODE)]
    loss = -torch.stack(log_probs).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():  # an evaluation pass after the update, in the same step
        for _ in range(evaluate):
            policy(torch.randn(8, 4))


def _policy() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 2))
    return policy, torch.optim.Adam(policy.parameters(), lr=1e-3)


def test_an_episode_of_many_forwards_is_handed_over_thinned_and_counted_in_full(
    seen: _Seen,
) -> None:
    # GIVEN a REINFORCE loop: 200 batch-1 forwards per optimizer step
    policy, opt = _policy()
    with memwatch(store=False) as mw:
        for _ in range(40):
            _episode_step(policy, opt)
        steps = mw.steps
        events = mw.events
    uncounted = [s.step for s in steps if not s.saved_measured and s.forward_calls == EPISODE]
    counted = [s.step for s in steps if s.saved_measured and s.forward_calls == EPISODE]
    assert uncounted and counted  # sampling was on
    # THEN on steps that count saved tensors every forward reaches the probes
    assert all(seen.handed[s] == EPISODE for s in counted)
    # AND on the others only a few do, each standing for its share: the total is right
    thin = tracker_module.FORWARD_THIN_EVERY
    full = tracker_module.FORWARD_FULL
    expected = full + (EPISODE - full) // thin
    assert all(seen.handed[s] == expected for s in uncounted)
    assert all(abs(seen.weighted[s] - EPISODE) < thin for s in uncounted)
    # AND the step records count every forward, and the batch-1 calls evidence all of them
    calls = {e.step: e.data["calls"] for e in events if e.kind == "unbatched-forwards"}
    assert all(abs(calls[s] - EPISODE) < thin for s in uncounted if s in calls)


def test_an_evaluation_pass_after_many_training_forwards_is_seen_in_full(seen: _Seen) -> None:
    # GIVEN the same loop with a short no-grad evaluation pass after each update
    policy, opt = _policy()
    with memwatch(store=False) as mw:
        for _ in range(40):
            _episode_step(policy, opt, evaluate=5)
        steps = mw.steps
    uncounted = [s.step for s in steps if not s.saved_measured and s.forward_calls > EPISODE]
    assert uncounted
    # THEN each of its forwards reaches the probes (a new kind of forward: grad disabled),
    #      although the step's training forwards were thinned
    assert all(seen.eval_handed.get(s) == 5 for s in uncounted)
    assert all(seen.handed[s] < EPISODE for s in uncounted)


def test_deep_analysis_hands_every_forward_over(seen: _Seen) -> None:
    # GIVEN the loop watched with analysis="deep" (saved tensors counted on every step)
    policy, opt = _policy()
    with memwatch(store=False, analysis="deep") as mw:
        for _ in range(12):
            _episode_step(policy, opt)
        steps = mw.steps
    # THEN no forward is skipped
    episodes = [s for s in steps if s.boundary == "optimizer"][1:]  # the first: see below
    assert len(episodes) == 11
    assert all(seen.handed[s.step] == s.forward_calls == EPISODE for s in episodes)


def test_a_thinned_forward_that_raises_leaves_the_next_forwards_counted(seen: _Seen) -> None:
    # GIVEN the REINFORCE loop, warmed up until its steps are sampled
    policy, opt = _policy()
    with memwatch(store=False) as mw:
        for _ in range(40):
            _episode_step(policy, opt)
        tracker = mw._tracker
        assert tracker is not None
        # WHEN, on a step that does not count saved tensors, a forward the probes skip
        #      (beyond the first ones of its kind) raises and the loop goes on
        while tracker._step_counted:
            _episode_step(policy, opt)
        states = torch.randn(EPISODE, 1, 4)
        log_probs = []
        for t in range(EPISODE):
            if t == tracker_module.FORWARD_FULL + 1:
                with pytest.raises(RuntimeError):
                    policy(torch.randn(1, 5))  # wrong width: the forward raises
            log_probs.append(policy(states[t]).log_softmax(-1)[0, 0])
        loss = -torch.stack(log_probs).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        _episode_step(policy, opt)
        steps = mw.steps
    # THEN the failed forward counts as one of its step, and the call depth was unwound:
    #      every later forward is a root forward of its step again
    assert [s.forward_calls for s in steps[-2:]] == [EPISODE + 1, EPISODE]
