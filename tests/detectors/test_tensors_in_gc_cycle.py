"""tensors-in-gc-cycle: objects holding tensors on a reference cycle, freed only by gc.

The programs below are run under a real watch. Most run with the collector switched off
(``gc.disable()``, as a program between two automatic collections), so that what the
probe sees does not depend on when Python happens to collect; the ones about collections
call ``gc.collect()`` themselves, as a program would.
"""

from __future__ import annotations

import gc
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis.detectors import tensors_in_gc_cycle as detector
from memwatch.collect import gc_walk
from memwatch.evidence import GcCycleGarbage
from memwatch.records import Finding, Location
from tests.detectors.loop_helpers import analysis, step

KIND = "tensors-in-gc-cycle"
MiB = 1024 * 1024
X = torch.randn(8, 16)


@pytest.fixture
def collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
        gc.collect()


def _findings(program: Callable[[], None]) -> list[Finding]:
    with memwatch(store=False) as mw:
        program()
    return [f for f in mw.findings if f.kind == KIND]


def _warning(findings: list[Finding]) -> Finding:
    (finding,) = [f for f in findings if f.severity in ("warning", "error")]
    return finding


def _problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity in ("warning", "error")]


# -- programs: models rebuilt per trial ------------------------------------------------------


class AliasNet(nn.Module):
    """BUG shape: a bound method of the module stored on the module."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 1)
        self.register_buffer("table", torch.zeros(256, 1024))  # 1 MiB
        self.which_act = self.relu_act  # the cycle: self -> bound method -> self

    def relu_act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.which_act(x))


class ChoiceNet(AliasNet):
    """FIXED twin: the choice is stored, the method picked at call time."""

    def __init__(self) -> None:
        super().__init__()
        del self.which_act
        self.act = "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu_act(x))


class HookNet(nn.Module):
    """BUG shape: a forward hook closure capturing ``self``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 1)
        self.register_buffer("table", torch.zeros(256, 1024))
        self.seen = 0.0

        def count_hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            self.seen += 1

        self.register_forward_hook(count_hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class PlainNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 1)
        self.register_buffer("table", torch.zeros(256, 1024))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def trials(make: Callable[[], nn.Module], count: int = 6, steps: int = 3) -> Callable[[], None]:
    """A sweep: a fresh model and optimizer per trial, a few steps each."""

    def program() -> None:
        for _ in range(count):
            model = make()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            for _ in range(steps):
                loss = model(X).sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    return program


def test_a_bound_method_stored_on_the_module_is_named_with_its_line(collector_off: None) -> None:
    # GIVEN a sweep whose model stores `self.which_act = self.relu_act` (1 MiB buffer each)
    findings = _findings(trials(AliasNet))
    # THEN one warning names the attribute, the bound method and the line that stores it
    finding = _warning(findings)
    assert finding.variable == "model.which_act.__self__"
    assert "bound method AliasNet.relu_act" in finding.detail
    assert finding.location is not None and finding.location.function == "__init__"
    assert "self.which_act = self.relu_act" in _line(finding.location)
    # AND the lag: the dropped models waited for the collector together, 1 MiB each
    assert finding.evidence["peak_at_once"] >= 4
    assert finding.bytes is not None and finding.bytes >= 4 * MiB
    assert "WeakMethod" in finding.fix or "store the choice" in finding.fix


def test_its_fixed_twin_is_silent(collector_off: None) -> None:
    # GIVEN the same sweep storing the choice instead of the bound method
    # THEN every model dies by reference counting: nothing
    assert _findings(trials(ChoiceNet)) == []


def test_a_hook_closure_capturing_self_is_named_by_the_hook(collector_off: None) -> None:
    # GIVEN restarts of a model whose forward hook closure refers to `self`
    finding = _warning(_findings(trials(HookNet)))
    # THEN the path goes through the module's forward hooks and the closure variable
    assert finding.variable is not None
    assert finding.variable.startswith("model._forward_hooks[")
    assert "closure 'self'" in finding.variable
    assert "count_hook" in finding.detail
    assert finding.location is not None
    assert "self.register_forward_hook(count_hook)" in _line(finding.location)
    assert "hook" in finding.fix


def test_a_model_rebuilt_per_fold_without_a_cycle_is_silent(collector_off: None) -> None:
    # GIVEN k-fold training rebuilding a plain model (no cycle) per fold
    # THEN nothing
    assert _findings(trials(PlainNet)) == []


# -- programs: objects built per step --------------------------------------------------------


class Storage:
    def __init__(self, **values: object) -> None:
        for key, value in values.items():
            setattr(self, key, value)


class ParentBatch:
    """BUG shape: the batch's storage points back at the batch."""

    def __init__(self, x: torch.Tensor) -> None:
        self.store = Storage(x=x, parent=self)


class WeakParentBatch:
    """FIXED twin: a weak back-reference."""

    def __init__(self, x: torch.Tensor) -> None:
        self.store = Storage(x=x, parent=weakref.ref(self))


class Node:
    """A tree of feature nodes with parent pointers (each child refers to its parent)."""

    def __init__(self, features: torch.Tensor, parent: Node | None = None) -> None:
        self.features = features
        self.parent = parent
        self.children: list[Node] = []

    def add(self, features: torch.Tensor) -> Node:
        child = Node(features, parent=self)
        self.children.append(child)
        return child


@dataclass
class Record:
    """A dataclass that ends up in its own list (``record.related.append(record)``)."""

    features: torch.Tensor
    related: list[Any] = field(default_factory=list)


class Config:
    """A cycle without tensors: an options object and its parent."""

    def __init__(self) -> None:
        self.sub = Storage(owner=self, lr=0.1)


def per_step(
    make: Callable[[], Any], steps: int = 12, collect_every: int = 0
) -> Callable[[], None]:
    """A loop building one object per step (a batch, a tree) and training on its tensor."""
    model = nn.Linear(16, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def program() -> None:
        for index in range(steps):
            batch = make()
            loss = model(X).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if collect_every and (index + 1) % collect_every == 0:
                gc.collect()
            del loss
            assert batch is not None

    return program


def _one_mib() -> torch.Tensor:
    return torch.zeros(256, 1024)


def _tree() -> Node:
    root = Node(_one_mib())
    root.add(torch.zeros(16))
    root.add(torch.zeros(16))
    return root


def _record() -> Record:
    record = Record(_one_mib())
    record.related.append(record)
    return record


def test_a_parent_back_reference_in_a_per_step_batch_is_named(collector_off: None) -> None:
    # GIVEN a batch built every step whose storage keeps `parent=self`
    finding = _warning(_findings(per_step(lambda: ParentBatch(_one_mib()))))
    # THEN the path ends in the back-reference, at the line that creates it
    assert finding.variable == "batch.store.parent"
    assert finding.location is not None
    assert "Storage(x=x, parent=self)" in _line(finding.location)
    assert finding.evidence["garbage_objects"] >= 8
    assert "weakref" in finding.fix


@pytest.mark.parametrize(("make", "found"), [(ParentBatch, True), (WeakParentBatch, False)])
def test_a_long_run_with_sampling_is_judged_the_same(
    collector_off: None, make: Callable[[torch.Tensor], Any], found: bool
) -> None:
    # GIVEN the per-step batches over a run long enough for sampling to thin the steps the
    #       gc probe looks at (it looks at the steps that count saved tensors)
    findings = _findings(per_step(lambda: make(_one_mib()), steps=160))
    # THEN the back-reference is still named, and its weak twin still silent
    if found:
        assert _warning(findings).variable == "batch.store.parent"
    else:
        assert findings == []


def test_a_weak_parent_reference_is_silent(collector_off: None) -> None:
    # GIVEN the same batches with `parent=weakref.ref(self)`
    # THEN each dies by reference counting: nothing
    assert _findings(per_step(lambda: WeakParentBatch(_one_mib()))) == []


def test_a_node_tree_with_parent_pointers_is_found(collector_off: None) -> None:
    # GIVEN a tree of feature nodes per step (children point at their parent)
    finding = _warning(_findings(per_step(_tree)))
    # THEN the path goes down the children and back up the parent pointer
    assert finding.variable is not None
    assert re.fullmatch(r"batch\.children\[[01]\]\.parent", finding.variable)
    assert finding.location is not None
    assert "parent" in _line(finding.location)


def test_a_dataclass_in_its_own_list_is_found(collector_off: None) -> None:
    # GIVEN a record per step appended to its own `related` list
    finding = _warning(_findings(per_step(_record)))
    # THEN the path is the list element
    assert finding.variable == "batch.related[0]"
    assert "Record" in finding.title


def test_a_cycle_without_tensors_is_silent(collector_off: None) -> None:
    # GIVEN a per-step options object on a cycle that holds no tensor
    # THEN nothing: no memory lags behind
    assert _findings(per_step(Config)) == []


def test_collections_that_free_several_at_once_are_reported_too() -> None:
    # GIVEN the collector running (the program collects every 4 steps), so the batches are
    #       reclaimed by collections rather than found waiting at every step end
    finding = _warning(_findings(per_step(lambda: ParentBatch(_one_mib()), collect_every=4)))
    # THEN the collections freed several at once: still a warning
    assert finding.evidence["reclaimed_by_gc"] >= 2
    assert finding.evidence["peak_at_once"] >= 2


def test_a_program_that_collects_every_step_gets_no_warning() -> None:
    # GIVEN the same batches with the program's own gc.collect() after every step
    findings = _findings(per_step(lambda: ParentBatch(_one_mib()), steps=6, collect_every=1))
    # THEN never more than one waits: an info finding (seen, but not a problem)
    assert _problems(findings) == []
    (finding,) = findings
    assert finding.severity == "info"
    assert finding.evidence["peak_at_once"] == 1


def test_a_cyclic_model_used_for_the_whole_run_is_silent(collector_off: None) -> None:
    # GIVEN one model with a bound-method cycle, kept for the whole run (as a framework's
    #       module and trainer refer to each other)
    # THEN it is never garbage during the run: nothing
    assert _findings(trials(AliasNet, count=1, steps=8)) == []


def _train_step_for(model: nn.Module) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def train_step() -> None:
        loss = model(X).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return train_step


#: A script's module-level step function (its closure holds the model), as in a benchmark
#: or a notebook: ``step = make_step(model)`` at the top of the file.
STEP: Callable[[], None] | None = None


def test_memwatch_own_references_make_no_cycle_of_the_users_model(
    collector_off: None,
) -> None:
    # GIVEN a model held by a module-level step function's closure (no cycle of its own),
    #       and memwatch's wrapper on the root module, which leads to the tracker, its
    #       probes and what they remember of the loop's globals, back to the step function
    global STEP
    STEP = _train_step_for(PlainNet())
    try:
        # WHEN it trains under the watch
        with memwatch(store=False) as mw:
            for _ in range(12):
                STEP()
    finally:
        STEP = None
    # THEN no cycle is recorded: the path through memwatch's own objects is not the user's
    assert [e for e in mw.events if e.kind == GcCycleGarbage.KIND] == []


# -- what the probe must never do ------------------------------------------------------------


def test_the_probe_never_collects_and_removes_its_callback(monkeypatch: Any) -> None:
    # GIVEN gc.collect made to fail loudly, and the callbacks installed before the watch
    def forbidden(*args: object) -> int:
        raise AssertionError("memwatch called gc.collect()")

    before = list(gc.callbacks)
    monkeypatch.setattr(gc, "collect", forbidden)
    # WHEN a leaking sweep runs under the watch
    findings = _findings(trials(AliasNet))
    monkeypatch.undo()
    # THEN it was judged without a collection, and the callbacks are as they were
    assert _problems(findings)
    assert gc.callbacks == before


def test_the_probe_keeps_no_object_alive(collector_off: None) -> None:
    # GIVEN the sweep's models, remembered weakly by the test
    models: list[Any] = []

    def make() -> nn.Module:
        model = AliasNet()
        models.append(weakref.ref(model))
        return model

    _findings(trials(make))
    # WHEN the collector runs after the watch
    gc.collect()
    # THEN every model is gone: memwatch held none of them
    assert [ref() for ref in models] == [None] * len(models)


class PlainBatch:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x


def test_a_plain_class_built_every_step_stops_being_walked(monkeypatch: Any) -> None:
    # GIVEN a loop building a plain batch object (no cycle) every step, walks counted
    walks: list[int] = []
    real_walk = gc_walk.walk

    def counting(root: Any, limit: int = gc_walk.MAX_WALK) -> gc_walk.Walk:
        walks.append(1)
        return real_walk(root, limit)

    monkeypatch.setattr(gc_walk, "walk", counting)
    # WHEN 30 steps run
    findings = _findings(per_step(lambda: PlainBatch(torch.zeros(4)), steps=30))
    # THEN nothing is reported and the class is walked a bounded number of times (its
    #      first objects, the model once or twice), not once per step
    assert findings == []
    assert len(walks) <= 12


# -- the unreachability test itself ----------------------------------------------------------


def _verdict(obj_ref: Any) -> bool | None:
    found = gc_walk.walk(obj_ref())
    try:
        return gc_walk.is_garbage(found)
    finally:
        found.clear()


KEEP: list[Any] = []


def test_a_dropped_cycle_is_garbage_and_a_held_one_is_not(collector_off: None) -> None:
    # GIVEN a cycle held by a local, then by a list, a closure and a module global
    batch = ParentBatch(_one_mib())
    ref = weakref.ref(batch)
    assert _verdict(ref) is False
    holder = [batch]
    del batch
    assert _verdict(ref) is False
    del holder

    def keep(obj: Any) -> Callable[[], Any]:
        return lambda: obj

    closure = keep(ref())
    assert _verdict(ref) is False
    del closure
    KEEP.append(ref())
    assert _verdict(ref) is False
    KEEP.clear()
    # THEN once nothing outside the cycle holds it, it is garbage (without a collection)
    assert ref() is not None
    assert _verdict(ref) is True


def test_a_walk_cut_short_never_says_garbage(collector_off: None, monkeypatch: Any) -> None:
    # GIVEN a dropped cycle too big for the walk's bound
    root = Node(torch.zeros(4))
    node = root
    for _ in range(50):
        node = node.add(torch.zeros(4))
    ref = weakref.ref(root)
    del root, node
    monkeypatch.setattr(gc_walk, "MAX_WALK", 20)
    found = gc_walk.walk(ref(), limit=20)
    # THEN the verdict is "held", never a false "garbage"
    assert found.truncated
    assert gc_walk.is_garbage(found) is False
    found.clear()


# -- the rule, on hand-made evidence ---------------------------------------------------------

WHERE = Location("train.py", 12, "__init__")


def _evidence(**fields: object) -> object:
    values: dict[str, object] = {
        "cycle": "Net.which_act.__self__",
        "variable": "model",
        "object_type": "Net",
        "hops": ((".which_act", "bound method Net.act"), (".__self__", "Net")),
        "object_bytes": 2 * MiB,
        "garbage_objects": 5,
        "unreachable": 5,
        "pending": 3,
        "peak_pending": 3,
        "peak_pending_bytes": 6 * MiB,
        "first_step": 4,
    }
    values.update(fields)
    return GcCycleGarbage(**values).event(20, WHERE)  # type: ignore[arg-type]


def _judge(*events: object) -> list[Finding]:
    return detector.detect(analysis([step(n) for n in range(24)], events))  # type: ignore[arg-type]


def test_several_waiting_at_once_with_bytes_is_a_warning() -> None:
    (finding,) = _judge(_evidence())
    assert finding.severity == "warning"
    assert finding.bytes == 6 * MiB
    assert finding.location == WHERE


def test_the_latest_event_of_a_cycle_decides() -> None:
    # GIVEN an early event with one waiting, then the run's latest with three
    (finding,) = _judge(_evidence(peak_pending=1, peak_pending_bytes=2 * MiB), _evidence())
    assert finding.evidence["peak_at_once"] == 3


def test_one_at_a_time_is_info_and_small_objects_are_nothing() -> None:
    (finding,) = _judge(_evidence(peak_pending=1, peak_pending_bytes=2 * MiB))
    assert finding.severity == "info"
    assert _judge(_evidence(object_bytes=1024, peak_pending_bytes=3 * 1024)) == []


def test_objects_found_only_at_stop_or_made_of_library_objects_are_not_reported() -> None:
    # GIVEN garbage found only when the watch stopped (the run was over)
    assert _judge(_evidence(garbage_objects=0, unreachable=0, peak_pending=0, at_stop=3)) == []
    # GIVEN a cycle with no class or function of the program on it (a framework's design)
    assert _judge(_evidence(user_type=False)) == []


def test_a_wrong_unreachable_verdict_silences_the_cycle() -> None:
    # GIVEN an object judged unreachable that then died by reference counting
    # THEN the evidence is not trusted
    assert _judge(_evidence(refcount_after_unreachable=1)) == []


def _line(location: Location) -> str:
    import linecache
    from pathlib import Path

    path = Path(location.file)
    if not path.is_absolute():
        path = Path.cwd() / path
    return linecache.getline(str(path), location.line)


# -- the statement that closes the cycle -----------------------------------------------------


def test_the_back_reference_search_knows_the_ways_code_stores_a_name(tmp_path: Any) -> None:
    from memwatch.source.backrefs import find_back_reference

    # GIVEN a file with one class storing names of a cycle in five different ways
    source = tmp_path / "model.py"
    source.write_text(
        "class Tree:\n"
        "    def __init__(self, parent):\n"
        "        setattr(self, 'owner', parent)\n"  # line 3
        "        parent.children.append(self)\n"  # line 4
        "        self.box = Box(back=self)\n"  # line 5
        "        def hook(m, i, o):\n"
        "            return self\n"
        "        self.register_forward_hook(hook)\n"  # line 8
        "        self.pick = self.choose\n",  # line 9
        encoding="utf-8",
    )
    classes = [(str(source), "Tree", 2)]

    def line(name: str) -> int | None:
        found = find_back_reference(classes, [name])
        return None if found is None else found.line

    # THEN each name leads to the statement that stores it, and an unknown name to none
    assert line("owner") == 3
    assert line("children") == 4
    assert line("back") == 5
    assert line("hook") == 8
    assert line("pick") == 9
    assert line("elsewhere") is None
