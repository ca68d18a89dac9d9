"""The census: one leak written many ways is named wherever it is held; look-alikes are not.

Each loop runs under ``memwatch(store=False)`` in this process. The leaks keep a 64 KiB
detached tensor per step (memory-growth) or a loss with its graph (graph-accumulation);
the healthy loops keep bounded, replaced or cleared tensors that look the same at first.
"""

from __future__ import annotations

import copy
import functools
import sys
import textwrap
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.collect import census as census_module
from memwatch.collect.census import Census, CensusResult, CensusWatch
from memwatch.collect.holders import Scan
from memwatch.collect.holders_probe import HoldersProbe
from memwatch.records import Finding
from tests.records import make_step

KiB = 1024
MiB = 1024 * KiB
STEPS = 30


def _model() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128))
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def _batches(steps: int = STEPS) -> Iterator[tuple[int, torch.Tensor]]:
    for step in range(steps):
        yield step, torch.randn(128, 32)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    out = model(x)  # 128 x 128 floats: 64 KiB
    loss = out.pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return out


def _problems(findings: list[Finding]) -> list[tuple[str, str | None]]:
    return [(f.kind, f.variable) for f in findings if f.severity in ("warning", "error")]


def _one(findings: list[Finding], kind: str) -> Finding:
    matches = [f for f in findings if f.kind == kind and f.severity in ("warning", "error")]
    assert len(matches) == 1, _problems(findings)
    return matches[0]


# -- the same memory-growth leak, seven ways -------------------------------------------------
class Record:
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


class State:
    def __init__(self) -> None:
        self.values: list[torch.Tensor] = []


class Tracker:
    """A helper object two attributes deep: ``tracker.state.values``."""

    def __init__(self) -> None:
        self.state = State()

    def update(self, value: torch.Tensor) -> None:
        self.state.values.append(value)


def memoize(fn: Callable[..., Any]) -> Callable[..., Any]:
    cache: dict[Any, Any] = {}

    @functools.wraps(fn)
    def wrapper(key: int, value: torch.Tensor) -> torch.Tensor:
        if key not in cache:
            cache[key] = fn(value)
        return cache[key]

    return wrapper


@memoize
def features_of(value: torch.Tensor) -> torch.Tensor:
    return value * 2


def test_a_dict_value_is_named_by_its_key() -> None:
    # GIVEN detached outputs appended to a list that is a dict value
    model, opt = _model()
    store: dict[str, list[torch.Tensor]] = {"feats": [], "other": []}
    with memwatch(store=False) as mw:
        for _step, x in _batches():
            out = _train_step(model, opt, x)
            store["feats"].append(out.detach())
    # THEN memory-growth names `store['feats']` at the append
    finding = _one(mw.findings, "memory-growth")
    assert finding.variable == "store['feats']"
    assert finding.evidence["statement"] == 'store["feats"].append(out.detach())'
    assert finding.growth_per_step_bytes == 64 * KiB


def test_a_list_of_objects_is_named() -> None:
    # GIVEN a list of small records, each holding a step's output
    model, opt = _model()
    history: list[Record] = []
    with memwatch(store=False) as mw:
        for _step, x in _batches():
            out = _train_step(model, opt, x)
            history.append(Record(out.detach()))
    # THEN the list is named, with the bytes its records hold
    finding = _one(mw.findings, "memory-growth")
    assert finding.variable == "history"
    assert finding.evidence["statement"] == "history.append(Record(out.detach()))"
    assert finding.growth_per_step_bytes == 64 * KiB
    assert finding.bytes is not None and finding.bytes >= 16 * 64 * KiB


def test_a_helper_object_two_attributes_deep_is_named_at_its_store() -> None:
    # GIVEN a helper object whose inner state keeps every output
    model, opt = _model()
    tracker = Tracker()
    with memwatch(store=False) as mw:
        for _step, x in _batches():
            tracker.update(_train_step(model, opt, x).detach())
    # THEN `tracker.state.values` is named, at the helper's append
    finding = _one(mw.findings, "memory-growth")
    assert finding.variable == "tracker.state.values"
    assert finding.location is not None and finding.location.function == "update"


def test_a_decorators_closure_cache_is_named() -> None:
    # GIVEN a memoize decorator whose closure dict gains an entry per step
    model, opt = _model()
    with memwatch(store=False) as mw:
        for step, x in _batches():
            out = _train_step(model, opt, x)
            features_of(step, out.detach())
    # THEN the closure's `cache` is named, at `cache[key] = ...` in the wrapper
    finding = _one(mw.findings, "memory-growth")
    assert finding.variable == "cache"
    assert finding.location is not None and finding.location.function == "wrapper"
    assert "closure" in finding.detail


def test_a_defaultdict_of_lists_names_the_growing_key() -> None:
    # GIVEN a defaultdict of lists: floats under most keys, tensors under one
    model, opt = _model()
    logs: defaultdict[str, list[Any]] = defaultdict(list)
    with memwatch(store=False) as mw:
        for _step, x in _batches():
            out = _train_step(model, opt, x)
            logs["loss"].append(out.mean().item())
            logs["z"].append(out.detach())
    # THEN `logs['z']` is named, at its own append (not the float one)
    finding = _one(mw.findings, "memory-growth")
    assert finding.variable == "logs['z']"
    assert finding.evidence["statement"] == 'logs["z"].append(out.detach())'


def test_growth_every_k_steps_is_recognised_with_its_period() -> None:
    # GIVEN an evaluation every 5 steps whose outputs (4 x 64 KiB) are kept
    model, opt = _model()
    evals: list[torch.Tensor] = []
    with memwatch(store=False) as mw:
        for step, x in _batches(60):
            _train_step(model, opt, x)
            if step % 5 == 4:
                with torch.no_grad():
                    evals.extend(model(torch.randn(128, 32)) for _ in range(4))
    # THEN it is growth of 256 KiB every 5 steps, on `evals`
    finding = _one(mw.findings, "memory-growth")
    assert finding.variable == "evals"
    assert finding.evidence["period_steps"] == 5
    assert "every 5 steps" in finding.title


def test_a_numpy_memo_on_a_dataset_is_host_growth_named_at_its_store() -> None:
    # GIVEN a dataset object memoising a 256 KiB numpy array per index
    class Memo:
        def __init__(self) -> None:
            self._memo: dict[int, np.ndarray] = {}

        def get(self, index: int) -> np.ndarray:
            if index not in self._memo:
                self._memo[index] = np.ones((256, 256), dtype=np.float32)
            return self._memo[index]

    model, opt = _model()
    data = Memo()
    with memwatch(store=False) as mw:
        for step, x in _batches():
            data.get(step)
            _train_step(model, opt, x)
    # THEN memory-growth names `data._memo` as host arrays, at its store
    finding = _one(mw.findings, "memory-growth")
    assert finding.variable == "data._memo"
    assert "host arrays (numpy)" in finding.detail
    assert (
        finding.evidence["statement"] == "self._memo[index] = np.ones((256, 256), dtype=np.float32)"
    )


FRAMEWORK = textwrap.dedent(
    '''
    """A stand-in for a training framework: installed code that owns the loop."""
    import torch


    class Trainer:
        def __init__(self, steps):
            self.steps = steps

        def fit(self, module):
            self.module = module
            opt = module.configure_optimizers()
            for index in range(self.steps):
                loss = module.training_step(torch.randn(128, 32), index)
                opt.zero_grad()
                loss.backward()
                opt.step()
    '''
)


@pytest.fixture()
def framework(tmp_path: Path) -> Iterator[Any]:
    """A module imported from a ``site-packages`` folder: memwatch treats it as a framework."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    (folder / "census_fakefw.py").write_text(FRAMEWORK)
    sys.path.insert(0, str(folder))
    try:
        import census_fakefw  # type: ignore[import-not-found]

        yield census_fakefw
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("census_fakefw", None)


class LitLike(nn.Module):
    def __init__(self, keep_graph: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128))
        self.keep_graph = keep_graph
        self.step_outputs: list[torch.Tensor] = []

    def training_step(self, x: torch.Tensor, index: int) -> torch.Tensor:
        out = self.net(x)
        loss = out.pow(2).mean()
        self.step_outputs.append(loss if self.keep_graph else out.detach())
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_a_module_held_only_by_framework_frames_is_named_self_attribute(framework: Any) -> None:
    # GIVEN `Trainer(...).fit(LitLike())`: the module is reachable only from the framework
    with memwatch(store=False) as mw:
        framework.Trainer(STEPS).fit(LitLike(keep_graph=False))
    # THEN its list attribute is named as the class writes it, at the append
    finding = _one(mw.findings, "memory-growth")
    assert finding.variable == "self.step_outputs"
    assert finding.location is not None and finding.location.function == "training_step"


def test_a_graph_kept_in_a_framework_held_module_is_graph_accumulation(framework: Any) -> None:
    # GIVEN the same, appending the loss itself (with its graph)
    with memwatch(store=False) as mw:
        framework.Trainer(STEPS).fit(LitLike(keep_graph=True))
    # THEN graph-accumulation names the list
    finding = _one(mw.findings, "graph-accumulation")
    assert finding.variable == "self.step_outputs"


# -- the same graph-accumulation leak, three ways ---------------------------------------------
class Stat:
    def __init__(self) -> None:
        self._tensor = torch.zeros(())

    def update(self, value: torch.Tensor) -> None:
        self._tensor = self._tensor + value


def test_a_running_sum_in_a_dict_value_is_named_by_key() -> None:
    model, opt = _model()
    sums: dict[str, Any] = {"loss": 0.0, "count": 0}
    with memwatch(store=False) as mw:
        for _step, x in _batches():
            out = model(x)
            loss = out.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums["loss"] += loss
            sums["count"] += 1
    finding = _one(mw.findings, "graph-accumulation")
    assert finding.variable == "sums['loss']"
    assert finding.location is not None
    assert 'sums["loss"] += loss' in (finding.evidence.get("statement") or "")


class Meter:
    """An average meter as many training scripts write it (pytracking PR #313)."""

    def __init__(self) -> None:
        self.val: Any = 0
        self.sum: Any = 0
        self.count = 0

    def update(self, val: Any, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n


class Logger:
    def __init__(self) -> None:
        self.meters: dict[str, dict[str, Meter]] = {}

    def log(self, phase: str, values: dict[str, Any]) -> None:
        meters = self.meters.setdefault(phase, {})
        for name, value in values.items():
            meters.setdefault(name, Meter()).update(value)


def _log_losses(logger: Any, item: bool) -> list[Finding]:
    model, opt = _model()
    with memwatch(store=False) as mw:
        for _step, x in _batches():
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            aux = loss.detach() * 0  # this step's value: the meter's `val` has no history
            values = {"loss": loss.item() if item else loss, "aux": aux}
            logger(values)
    return mw.findings


def test_meters_in_a_dict_of_dicts_on_a_logger_are_named_by_their_sum() -> None:
    # GIVEN a Logger object holding {phase: {name: Meter}}, fed the loss tensor
    logger = Logger()
    findings = _log_losses(lambda values: logger.log("train", values), item=False)
    # THEN the meter's running sum is named, at depth, where it is extended
    finding = _one(findings, "graph-accumulation")
    assert finding.variable is not None and finding.variable.endswith("['loss'].sum")
    assert "self.sum += val * n" in (finding.evidence.get("statement") or "")


def test_meters_in_a_list_are_named_and_fed_floats_are_silent() -> None:
    # GIVEN meters kept in a module-level list, one fed tensors (bug), then floats (healthy)
    meters = [Meter(), Meter()]

    def feed(values: dict[str, Any]) -> None:
        meters[0].update(values["loss"])
        meters[1].update(values["aux"])

    bug = _log_losses(feed, item=False)
    assert _one(bug, "graph-accumulation").variable == "meters[0].sum"
    meters[:] = [Meter(), Meter()]
    assert _problems(_log_losses(feed, item=True)) == []


def test_a_running_sum_in_a_helper_inside_a_module_is_named_at_depth() -> None:
    model, opt = _model()
    model.stat = Stat()  # type: ignore[assignment]
    with memwatch(store=False) as mw:
        for _step, x in _batches():
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.stat.update(loss)  # type: ignore[operator]
    finding = _one(mw.findings, "graph-accumulation")
    assert finding.variable == "model.stat._tensor"
    assert finding.location is not None and finding.location.function == "update"


def test_a_running_sum_in_a_closure_cell_is_named() -> None:
    model, opt = _model()

    def make_meter() -> Callable[[torch.Tensor], None]:
        total = torch.zeros(())

        def add(value: torch.Tensor) -> None:
            nonlocal total
            total = total + value

        return add

    add = make_meter()
    with memwatch(store=False) as mw:
        for _step, x in _batches():
            loss = model(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            add(loss)
    finding = _one(mw.findings, "graph-accumulation")
    assert finding.variable == "total"
    assert finding.location is not None and finding.location.function == "add"


# -- healthy look-alikes ---------------------------------------------------------------------
@functools.lru_cache(maxsize=6)
def _table(index: int) -> torch.Tensor:
    return torch.ones(128, 128) * index


def test_bounded_warm_ups_rings_best_copies_cleared_lists_and_ema_are_silent() -> None:
    # GIVEN in one loop: an lru_cache(maxsize=6) warming up, a deque(maxlen=5) ring buffer,
    #       a best-model deepcopy taken when the loss improves, a list cleared every 5
    #       steps, an EMA of the weights in a dict updated under no_grad, and a dict of
    #       per-key floats
    model, opt = _model()
    ring: deque[torch.Tensor] = deque(maxlen=5)
    epoch_outputs: list[torch.Tensor] = []
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best: dict[str, Any] = {"loss": float("inf"), "state": None}
    meters: dict[str, float] = defaultdict(float)
    with memwatch(store=False) as mw:
        for step, x in _batches(40):
            out = _train_step(model, opt, x)
            _table(step % 6)
            ring.append(out.detach())
            epoch_outputs.append(out.detach())
            if step % 5 == 4:
                epoch_outputs.clear()
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    ema[k].mul_(0.9).add_(v, alpha=0.1)
            value = out.pow(2).mean().item()
            meters["loss"] += value
            if value < best["loss"] and step < 5:
                best["loss"], best["state"] = value, copy.deepcopy(model.state_dict())
    # THEN nothing at warning level or above
    assert _problems(mw.findings) == []


# -- the census itself -------------------------------------------------------------------------
def _names(result_holders: list[Any]) -> set[str]:
    return {h.name for h in result_holders}


class Cached:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    @functools.cache  # noqa: B019
    def gram(self) -> torch.Tensor:
        return self.x @ self.x.T


def test_census_names_holders_everywhere_and_keeps_nothing_alive() -> None:
    # GIVEN tensors held in a nested module helper, a dict value, a defaultdict of lists,
    #       a closure cell and a functools.cache of a method
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    model[0].stat = Stat()  # type: ignore[assignment]
    model[0].stat._tensor = torch.ones(4) * torch.ones(4, requires_grad=True)
    sums = {"a": torch.ones(3, requires_grad=True) * 2, "n": 1}  # noqa: F841 (the census reads it)
    logs: defaultdict[str, list[Any]] = defaultdict(list)
    logs["z"].append(torch.ones(128, 128))
    Cached(torch.ones(64, 64)).gram()
    # WHEN a census runs from this frame
    result = Census().run(sys._getframe())
    names = _names(result.holders)
    # THEN each is named as a person would write it
    assert "model[0].stat._tensor" in names
    assert "sums['a']" in names
    assert "logs['z']" in names
    assert "Cached.gram (functools cache)" in names
    assert result.nodes > 0 and not result.capped
    # AND following the holders keeps nothing alive: dropping the list frees its tensor
    watch = CensusWatch()
    watch.run(sys._getframe())
    tensor = logs["z"][0]
    ref = __import__("weakref").ref(tensor)
    del tensor
    logs["z"].clear()
    scan = Scan(0)
    watch.entries(scan, sys._getframe())
    scan.entries.clear()
    assert ref() is None
    Cached.gram.cache_clear()


class Node:
    def __init__(self, width: int, depth: int) -> None:
        for i in range(width if depth else 0):
            setattr(self, f"child{i}", Node(width, depth - 1))


def test_census_respects_its_node_budget() -> None:
    # GIVEN a tree of 60 x 60 objects reachable from a local
    tree = Node(60, 2)  # noqa: F841
    # WHEN the census runs with a budget of 1,000 objects
    result = Census().run(sys._getframe(), node_budget=1_000)
    # THEN it stops there and says so
    assert result.capped and result.nodes <= 1_001


def test_following_a_defaultdict_key_never_adds_it_back() -> None:
    # GIVEN a defaultdict whose 'z' list the census remembered
    logs: defaultdict[str, list[Any]] = defaultdict(list)
    logs["z"].append(torch.ones(64, 64))
    watch = CensusWatch()
    watch.run(sys._getframe())
    # WHEN the user deletes the key and the holders are measured again
    del logs["z"]
    scan = Scan(0)
    watch.entries(scan, sys._getframe())
    scan.entries.clear()
    # THEN the user's dict is as they left it
    assert dict(logs) == {}


def test_census_holders_starting_late_are_reported_within_five_steps() -> None:
    # GIVEN a loop that, from step 10, sums the loss into a dict value and keeps outputs
    #       in a list that is a dict value
    model, opt = _model()
    sums: dict[str, Any] = {"loss": 0.0}
    store: dict[str, list[torch.Tensor]] = {"feats": [], "ids": []}
    first: dict[str, int] = {}
    with memwatch(store=False) as mw:
        for step, x in _batches(24):
            out = _train_step(model, opt, x)
            if step >= 10:
                sums["loss"] += out.pow(2).mean()
                store["feats"].append(out.detach())
            # WHEN we look after each step
            for finding in mw.findings:
                if finding.severity in ("warning", "error"):
                    first.setdefault(finding.kind, step)
    # THEN both are reported within five steps of the start, on the dict values
    assert first["graph-accumulation"] <= 10 + 5
    assert first["memory-growth"] <= 10 + 5
    names = {f.kind: f.variable for f in mw.findings}
    assert names == {"graph-accumulation": "sums['loss']", "memory-growth": "store['feats']"}


# -- when a census runs on a memory rise (holders_probe._census_trigger) ----------------------
class _Host:
    """What ``HoldersProbe._census_done`` asks of the tracker."""

    def __init__(self) -> None:
        self.escalations: list[str] = []

    def emit(self, event: Any) -> None:
        pass

    def escalate(self, reason: str, memory: bool = False) -> None:
        self.escalations.append(reason)


def _rss_triggers(rss_mib: list[int]) -> list[int]:
    """The steps (of ``rss_mib``, one RSS per step) whose census ran on an RSS rise; each
    census runs, costing a tenth of a step."""
    probe = HoldersProbe()
    host = _Host()
    fired = []
    for step, rss in enumerate(rss_mib):
        record = make_step(step, rss_bytes=rss * MiB)
        trigger = probe._census_trigger(record)
        if trigger:
            probe._census_done(host, record, CensusResult(cost_s=0.001), trigger)  # type: ignore[arg-type]
        if trigger == "rss":
            fired.append(step)
    return fired


def test_rss_swinging_by_megabytes_runs_no_census_on_rises_and_a_new_high_does() -> None:
    # GIVEN a loop whose RSS swings between 300 and 316 MiB from step to step (large
    #       tensors freed and made again), with no new high after its first swings, and
    #       its early census at a low
    swings = [316, 300, 315, 301, 316, 300, 314, 302, 316, 300] * 4
    # THEN no census runs on an RSS rise once the first swings set the high-water mark
    assert [s for s in _rss_triggers(swings) if s >= 4] == []
    # WHEN instead the RSS climbs 1 MiB per step (something keeps growing)
    climbing = [300 + step for step in range(40)]
    # THEN censuses run on the rises all along
    assert len([s for s in _rss_triggers(climbing) if s >= 20]) >= 3


class Recorder:
    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []


def test_the_running_programs_empty_list_outranks_what_other_user_modules_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an imported user module (not running: a project's utilities, a test suite)
    #       holding 200 tensors of 64 KiB, more than the census remembers
    (tmp_path / "far_cache.py").write_text(
        textwrap.dedent(
            """
            import torch
            for _i in range(200):
                globals()[f"table_{_i}"] = torch.zeros(128, 128)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    far = __import__("far_cache")
    monkeypatch.setitem(sys.modules, "far_cache", far)
    # AND the running loop's object with an empty list that will grow later (Lightning's
    #     `self.validation_step_outputs`)
    recorder = Recorder()  # noqa: F841 (the census reads it)
    # WHEN the census runs from this frame and remembers what it keeps
    watch = CensusWatch()
    result = watch.run(sys._getframe())
    # THEN the far module filled the candidates, yet the running program's list is kept
    assert len(result.holders) > census_module.MAX_WATCH
    kept = {p.name for p in watch._paths.values()}
    assert "recorder.outputs" in kept
    assert len(kept) <= census_module.MAX_WATCH
