"""No watch, hook or patch outlives a test, whatever way the test ends."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.modules.module as torch_module
import torch.optim.optimizer as torch_optimizer

import memwatch
from memwatch.testing import assert_no_leaks
from tests.plugin.sources import training_module

pytest_plugins = ["pytester"]


def global_torch_state() -> dict[str, Any]:
    """Everything a watch installs, by identity or size."""
    return {
        "active watch": memwatch.active_watch(),
        "forward hooks": len(torch_module._global_forward_hooks),
        "forward pre-hooks": len(torch_module._global_forward_pre_hooks),
        "optimizer pre-hooks": len(torch_optimizer._global_optimizer_pre_hooks),
        "optimizer post-hooks": len(torch_optimizer._global_optimizer_post_hooks),
        "Optimizer.zero_grad": torch.optim.Optimizer.zero_grad,
        "Module.zero_grad": torch.nn.Module.zero_grad,
        "GradScaler.update": torch.amp.GradScaler.update,
        "autograd.backward": torch.autograd.backward,
        "autograd.grad": torch.autograd.grad,
        "saved-tensor hooks": torch._C._autograd._top_saved_tensors_default_hooks(False),
    }


FAILING_IN_EVERY_WAY = training_module("""
    @pytest.mark.memwatch(max_step_growth=0)
    def test_marker_check_fails():
        kept = train(6, cache_bytes=1024)

    def test_fixture_test_raises(memwatch):
        train(2)
        raise RuntimeError("boom")

    def test_helper_fails(memwatch):
        kept = train(6, cache_bytes=1024)
        memwatch.assert_no_leaks(tolerance=0)

    @pytest.mark.memwatch
    def test_marked_test_raises():
        train(2)
        raise RuntimeError("boom")
""")


@pytest.mark.parametrize("flags", [(), ("--memwatch",)], ids=["plain", "watch-all"])
def test_failing_tests_leave_no_watch_or_hook_behind(
    inner: pytest.Pytester, flags: tuple[str, ...]
) -> None:
    # GIVEN the torch globals a watch touches
    before = global_torch_state()
    assert before["active watch"] is None
    # WHEN tests fail through a marker check, an exception and an assertion helper
    inner.makepyfile(test_failing=FAILING_IN_EVERY_WAY)
    result = inner.runpytest_inprocess(*flags)
    result.assert_outcomes(failed=4)
    # THEN every one of them is back as it was
    assert global_torch_state() == before


def test_a_raising_step_function_leaves_nothing_behind() -> None:
    # GIVEN a step function that fails on its third call
    before = global_torch_state()
    calls = []

    def step() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("bad batch")

    # WHEN assert_no_leaks runs it THEN the error propagates and the watch is gone
    with pytest.raises(ValueError, match="bad batch"):
        assert_no_leaks(step, steps=6, warmup=1)
    assert global_torch_state() == before


def test_the_hygiene_check_sees_every_patch_a_watch_installs() -> None:
    # GIVEN the torch globals before a watch
    before = global_torch_state()
    # WHEN a watch is running THEN every hook and patch it installs shows as a difference
    #      (so the checks above cannot pass by looking at the wrong things)
    with memwatch.memwatch(store=False):
        during = global_torch_state()
    changed = {key for key in before if before[key] != during[key]}
    assert changed == set(before)
    assert global_torch_state() == before
