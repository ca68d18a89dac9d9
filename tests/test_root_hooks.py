"""Root forwards without global module hooks (memwatch/collect/hooks.py, ``ModuleHooks``).

While memwatch learns the root modules it watches every module call; then only the known
roots carry a wrapper, so their children keep torch's fast path. These stories check that
what relies on root forwards still works after the switch, and that the user's model is
never changed in a way the user can see (pickling, deep copies, the end of the watch).
"""

from __future__ import annotations

import copy
import io
from itertools import pairwise
from typing import Any

import pytest
import torch
import torch.nn.modules.module as torch_module
from torch import nn

from memwatch import memwatch
from memwatch.collect import hooks

WARM = hooks.DISCOVERY_STEPS + 2  # steps after which the global hooks are gone


@pytest.fixture(autouse=True)
def _root_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """These stories are about the switch to root wrappers (hooks.ROOT_ONLY, on by default)."""
    monkeypatch.setattr(hooks, "ROOT_ONLY", True)


def _mlp() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def _train(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    loss = model(torch.randn(4, 8)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def _global_hooks() -> int:
    return len(torch_module._global_forward_pre_hooks) + len(torch_module._global_forward_hooks)


def test_after_discovery_only_the_root_module_is_hooked() -> None:
    # GIVEN a training loop watched for a few steps
    model, opt = _mlp()
    before = _global_hooks()
    with memwatch(store=False) as mw:
        for _ in range(WARM):
            _train(model, opt)
        # THEN the global module hooks are gone, the root carries the wrapper and its
        #      children keep torch's own call path
        assert _global_hooks() == before
        assert model.__dict__.get("_compiled_call_impl") is not None
        assert all("_compiled_call_impl" not in m.__dict__ for m in list(model.modules())[1:])
        # AND every step still counts its root forward
        for _ in range(5):
            _train(model, opt)
        steps = mw.steps
    assert [s.forward_calls for s in steps[-5:]] == [1] * 5
    assert not steps[-1].every_forward_seen and steps[0].every_forward_seen
    # AND at the end of the watch the model is as before
    assert all("_compiled_call_impl" not in m.__dict__ for m in model.modules())


def test_a_hooked_model_pickles_and_copies_without_memwatch() -> None:
    # GIVEN a model whose root forwards memwatch watches with its wrapper
    model, opt = _mlp()
    with memwatch(store=False):
        for _ in range(WARM):
            _train(model, opt)
        assert model.__dict__.get("_compiled_call_impl") is not None
        # WHEN the program saves the whole model and deep-copies it (an EMA / best model)
        buffer = io.BytesIO()
        torch.save(model, buffer)
        twin = copy.deepcopy(model)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    # THEN neither the file nor the copy holds anything of memwatch, and both still work
    for other in (loaded, twin):
        assert other.__dict__.get("_compiled_call_impl") is None
        x = torch.randn(2, 8)
        assert torch.equal(other(x), model(x))


def test_a_model_rebuilt_with_a_new_optimizer_is_found_again() -> None:
    # GIVEN k-fold training: a new model and optimizer every few steps
    with memwatch(store=False) as mw:
        models = []
        for _fold in range(3):
            model, opt = _mlp()
            models.append(model)
            for _ in range(WARM + 2):
                _train(model, opt)
        steps = mw.steps
    per_fold = WARM + 2
    # THEN after its first step, every fold's root forwards are seen again (its backward
    #      without a known root forward made memwatch watch every module call again)
    for fold in range(3):
        later = steps[fold * per_fold + 1 : (fold + 1) * per_fold]
        assert all(s.forward_calls == 1 for s in later), [s.forward_calls for s in steps]
    # AND a first step whose new model was not seen says that not every forward was seen
    missed = [s for s in steps if s.forward_calls != 1]
    assert len(missed) <= 2 and all(not s.every_forward_seen for s in missed)


def test_a_loop_without_an_optimizer_keeps_its_step_boundaries() -> None:
    # GIVEN manual SGD (steps end at the next root forward after a backward)
    model, _ = _mlp()
    with memwatch(store=False) as mw:
        for _ in range(40):
            loss = model(torch.randn(4, 8)).pow(2).mean()
            loss.backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.01 * p.grad  # type: ignore[operator]
                    p.grad = None
        count = mw.step_count
    # THEN every iteration is one step, before and after the global hooks went away
    assert count in (39, 40)


def test_an_exception_in_a_watched_forward_propagates_and_leaves_no_trace() -> None:
    # GIVEN a model whose forward raises on a bad input, watched after discovery
    model, opt = _mlp()
    with memwatch(store=False) as mw:
        for _ in range(WARM):
            _train(model, opt)
        # WHEN its forward raises
        with pytest.raises(RuntimeError):
            model(torch.randn(4, 3))
        # THEN the failed forward counts as a root forward of its step, and the next
        #      forwards are still roots of theirs (the call depth was unwound)
        for _ in range(3):
            _train(model, opt)
        steps = mw.steps
    assert [s.forward_calls for s in steps[-3:]] == [2, 1, 1]


class _OwnCall(nn.Module):
    """A module overriding ``__call__``: it cannot carry the wrapper."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(8, 1)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_a_module_that_overrides_call_keeps_the_global_hooks() -> None:
    # GIVEN a root module that overrides __call__
    torch.manual_seed(0)
    model = _OwnCall()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = _global_hooks()
    with memwatch(store=False) as mw:
        for _ in range(WARM + 4):
            _train(model, opt)
        # THEN memwatch keeps watching every module call, and sees every root forward
        assert _global_hooks() > before
        steps = mw.steps
    assert all(s.forward_calls == 1 for s in steps)


def test_a_copy_that_keeps_the_wrapper_runs_its_own_forward() -> None:
    # GIVEN a hooked root module with a weight-norm parametrization, watched past discovery
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.utils.parametrizations.weight_norm(nn.Linear(8, 8)), nn.ReLU(), nn.Linear(8, 1)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False):
        for _ in range(WARM):
            _train(model, opt)
        assert model.__dict__.get("_compiled_call_impl") is not None
        # WHEN the program deep-copies it (an EMA model: parametrized modules copy their
        #      whole __dict__) and a DataParallel-style replica is made, each then changed
        twin = copy.deepcopy(model)
        replica = model._replicate_for_data_parallel()
        replica._modules = dict(replica._modules)
        replica._modules["2"] = nn.Linear(8, 1)
        with torch.no_grad():
            for p in twin.parameters():
                p.add_(1.0)
        x = torch.randn(4, 8)
        # THEN each runs its own forward, not the original's
        assert not torch.equal(twin(x), model(x))
        assert not torch.equal(replica(x), model(x))
        assert torch.equal(replica(x), replica._modules["2"](model[1](model[0](x))))
    # AND after the watch the copy still runs its own forward
    assert not torch.equal(twin(x), model(x))


def test_a_shallow_copy_of_an_lstm_root_runs_its_own_forward() -> None:
    # GIVEN an LSTM as the root module (``RNNBase.__getstate__`` keeps every instance
    #       attribute, memwatch's wrapper included), watched past discovery
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 8)
    opt = torch.optim.SGD(lstm.parameters(), lr=0.01)
    x = torch.randn(3, 2, 4)

    def train() -> None:
        opt.zero_grad()
        lstm(x)[0].pow(2).mean().backward()
        opt.step()

    with memwatch(store=False):
        for _ in range(WARM):
            train()
        assert lstm.__dict__.get("_compiled_call_impl") is not None
        # WHEN the program makes a shallow copy and gives it weights of its own
        twin = copy.copy(lstm)
        twin._parameters = dict(twin._parameters)  # (shared with the original else)
        twin._flat_weights = list(twin._flat_weights)
        twin.weight_hh_l0 = nn.Parameter(torch.zeros_like(lstm.weight_hh_l0))
        # THEN the copy runs its own forward, not the watched module's
        assert "_compiled_call_impl" not in twin.__dict__
        assert not torch.equal(twin(x)[0], lstm(x)[0])
        train()


@pytest.mark.parametrize("late", ["built", "deep-copied", "averaged"])
def test_a_model_made_after_discovery_is_watched_from_its_first_forward(late: str) -> None:
    # GIVEN a loop whose roots are learnt (only their wrappers are left)
    model, opt = _mlp()
    with memwatch(store=False) as mw:
        for _ in range(WARM):
            _train(model, opt)
        assert _global_hooks() == 0
        # WHEN the program makes a second model only now (an eval model, an EMA copy,
        #      swa_utils.AveragedModel) and calls it once at the top level in this step
        if late == "built":
            other: nn.Module = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
        elif late == "deep-copied":
            other = copy.deepcopy(model)
        else:
            other = torch.optim.swa_utils.AveragedModel(model)
        _train(model, opt)
        with torch.no_grad():
            other(torch.randn(2, 8))
        _train(model, opt)
        steps = mw.steps
    # THEN the late model's forward was counted in its step (it was not missed)
    assert [s.forward_calls for s in steps[-2:]] == [1, 2]


def test_the_watch_leaves_module_construction_and_copies_as_they_were() -> None:
    # GIVEN torch's module registration hooks and Module.__setstate__ before a watch
    registration = (
        dict(torch_module._global_module_registration_hooks),
        dict(torch_module._global_parameter_registration_hooks),
        dict(torch_module._global_buffer_registration_hooks),
    )
    setstate = nn.Module.__setstate__
    # WHEN a watch runs and ends
    model, opt = _mlp()
    with memwatch(store=False):
        for _ in range(WARM):
            _train(model, opt)
        assert nn.Module.__setstate__ is not setstate
    # THEN both are exactly as before
    assert nn.Module.__setstate__ is setstate
    assert (
        dict(torch_module._global_module_registration_hooks),
        dict(torch_module._global_parameter_registration_hooks),
        dict(torch_module._global_buffer_registration_hooks),
    ) == registration


def test_a_model_whose_layers_keep_their_own_state_saves_and_copies_plainly() -> None:
    # GIVEN a language model whose LSTM has its own __getstate__ (torch's RNNBase keeps
    #       every instance attribute, memwatch's wrapper included), watched past discovery
    torch.manual_seed(0)
    model = nn.ModuleList([nn.Embedding(20, 8), nn.LSTM(8, 8, batch_first=True)])
    embed, lstm = model
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tokens = torch.randint(0, 20, (2, 5))
    with memwatch(store=False):
        for _ in range(WARM):
            out, _ = lstm(embed(tokens))  # both called at the top level: both roots
            opt.zero_grad()
            out.pow(2).mean().backward()
            opt.step()
        assert lstm.__dict__.get("_compiled_call_impl") is not None
        # WHEN the program saves the whole model and deep-copies it during the watch
        buffer = io.BytesIO()
        torch.save(model, buffer)
        twin = copy.deepcopy(model)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    # THEN both work, as plain models: nothing of memwatch was written or copied
    assert b"memwatch" not in buffer.getvalue()
    for other in (loaded, twin):
        assert all(m.__dict__.get("_compiled_call_impl") is None for m in other.modules())
        assert torch.equal(other[1](other[0](tokens))[0], lstm(embed(tokens))[0])


def test_a_child_called_at_the_top_level_in_an_evaluation_phase_is_seen() -> None:
    # GIVEN a seq2seq-like model trained through its root, whose evaluation (every 10 steps,
    #       after model.eval()) calls a child at the top level, long after discovery
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for step in range(40):
            _train(model, opt)
            if step % 10 == 9:
                model.eval()
                with torch.no_grad():
                    model[0](torch.randn(2, 8))  # the encoder alone, at the top level
                model.train()
        steps = mw.steps
    # THEN each evaluation's child forward was counted with its step
    evaluations = [s.forward_calls for s in steps if s.step in (10, 20, 30)]
    assert evaluations == [2, 2, 2], [s.forward_calls for s in steps]


def test_a_model_compiled_after_discovery_compiles_in_one_graph() -> None:
    # GIVEN a watched loop whose root is wrapped, then compiled with fullgraph=True
    import torch._dynamo

    torch._dynamo.reset()
    model, opt = _mlp()
    with memwatch(store=False):
        for _ in range(WARM):
            _train(model, opt)
        assert model.__dict__.get("_compiled_call_impl") is not None
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        # WHEN it trains through the compiled model
        for _ in range(3):
            _train(compiled, opt)  # THEN Dynamo traces memwatch's wrapper without a break
    torch._dynamo.reset()


def test_a_patch_installed_on_top_of_memwatchs_survives_the_watch() -> None:
    # GIVEN a library that wraps Module.__setstate__ while the watch runs (Dynamo does,
    #       once per process, on the first compiled call)
    original = nn.Module.__setstate__
    tagged: list[object] = []

    def tagging(module: nn.Module, state: Any) -> None:
        tagging_base(module, state)
        tagged.append(module)

    try:
        with memwatch(store=False):
            tagging_base = nn.Module.__setstate__
            nn.Module.__setstate__ = tagging  # type: ignore[method-assign]
        # WHEN the watch has ended and the program deep-copies a model
        copy.deepcopy(nn.Linear(2, 2))
        # THEN the library's patch is still installed and still works
        assert nn.Module.__setstate__ is tagging
        assert len(tagged) == 1
    finally:
        nn.Module.__setstate__ = original  # type: ignore[method-assign]


def test_periodic_rediscoveries_that_find_nothing_new_come_less_often() -> None:
    # GIVEN a healthy loop with one model, watched for 1,000 steps
    model, opt = _mlp()
    discovering: list[bool] = []
    with memwatch(store=False) as mw:
        modules = mw._tracker._modules
        for _ in range(1000):
            _train(model, opt)
            discovering.append(modules.discovering)
    # WHEN we count the rediscoveries after the first discovery (each runs every module
    #      call through the global hooks for a few steps)
    starts = [i for i in range(1, len(discovering)) if discovering[i] and not discovering[i - 1]]
    gaps = [b - a for a, b in pairwise(starts)]
    # THEN each that found nothing new waited twice as long as the one before (a fixed
    #      period of 64 steps would have made 15 of them)
    assert 2 <= len(starts) <= 5, starts
    assert all(b > a for a, b in pairwise(gaps)), gaps
