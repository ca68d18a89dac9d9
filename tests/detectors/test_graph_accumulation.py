"""graph-accumulation: a holder alive across steps whose autograd graph grows every step."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from memwatch import memwatch
from memwatch.analysis import AnalysisInput
from memwatch.analysis.detectors import graph_accumulation
from memwatch.records import Event, Finding, Location
from memwatch.source.statements import find_in_class, find_in_function
from tests.helpers import SAMPLES, kinds, run_sample

KIND = "graph-accumulation"


def line_of(sample: str, text: str) -> int:
    lines = (SAMPLES / sample).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip().startswith(text))


def problems(findings: list[Finding]) -> set[str]:
    return kinds(findings, at_least="warning")


# -- the samples ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sample", "variable", "statement", "fix_has"),
    [
        (
            "graph_accumulation",
            "running_loss",
            "running_loss += loss",
            "running_loss += loss.item()",
        ),
        (
            "graph_accumulation_append",
            "losses",
            "losses.append(loss)",
            "losses.append(loss.item())",
        ),
        (
            "graph_accumulation_meter",
            "meter.sum",
            "meter.update(loss, x.size(0))",
            "meter.update(loss.item(), x.size(0))",
        ),
        (
            "graph_accumulation_rnn",
            "hidden",
            "logits, hidden = model(tokens, hidden)",
            "hidden = hidden.detach()",
        ),
    ],
)
def test_buggy_sample_names_the_variable_and_the_statement(
    tmp_path: Path, sample: str, variable: str, statement: str, fix_has: str
) -> None:
    # GIVEN a training loop that keeps every step's graph through one name
    # WHEN it runs under memwatch (findings recomputed from the run file)
    run = run_sample(f"bugs/{sample}.py", "--steps", "12", out=tmp_path / "run.db")
    # THEN the first finding is a graph-accumulation error on that name, at the statement
    #      that extends it, with a fix that rewrites that statement
    first = run.findings[0]
    assert first.kind == KIND and first.severity == "error"
    assert first.variable == variable
    assert first.location is not None
    assert Path(first.location.file).name == f"{sample}.py"
    assert first.location.line == line_of(f"bugs/{sample}.py", statement)
    assert fix_has in first.fix
    assert first.first_step == 0
    assert first.evidence["nodes_per_step"] > 0
    assert first.growth_per_step_bytes and first.growth_per_step_bytes > 0


@pytest.mark.parametrize(
    "sample",
    [
        "graph_accumulation",
        "graph_accumulation_append",
        "graph_accumulation_meter",
        "graph_accumulation_rnn",
    ],
)
def test_fixed_twin_is_clean(tmp_path: Path, sample: str) -> None:
    # GIVEN the same loop storing numbers (or detaching the hidden state)
    run = run_sample(f"bugs/{sample}_fixed.py", "--steps", "12", out=tmp_path / "run.db")
    # THEN nothing at warning level or above
    assert problems(run.findings) == set()


# -- in-process stories ----------------------------------------------------------------------
def _mlp() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def _step(model: nn.Module, opt: torch.optim.Optimizer) -> torch.Tensor:
    loss = model(torch.randn(8, 16)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def _graph_findings(mw: Any) -> list[Finding]:
    return [f for f in mw.findings if f.kind == KIND]


@pytest.mark.parametrize("start", [0, 7])
def test_a_leak_starting_at_step_k_is_reported_by_step_k_plus_5(start: int) -> None:
    # GIVEN a loop that starts accumulating the loss tensor at step `start`
    model, opt = _mlp()
    reported_at = None
    with memwatch(store=False) as mw:
        total: Any = 0.0
        for step in range(start + 12):
            loss = _step(model, opt)
            if step >= start:
                total = total + loss  # the leak begins here
            # WHEN we look at the findings after each step
            if reported_at is None and _graph_findings(mw):
                reported_at = step
    # THEN it is reported within five steps, as starting at `start`, on `total`
    assert reported_at is not None and reported_at <= start + 5
    finding = _graph_findings(mw)[0]
    assert finding.variable == "total"
    assert finding.first_step is not None and start <= finding.first_step <= start + 1


def test_a_container_leak_starting_late_is_reported_within_five_steps() -> None:
    # GIVEN a loop that starts appending loss tensors to a list at step 9
    model, opt = _mlp()
    reported_at = None
    with memwatch(store=False) as mw:
        kept: list[torch.Tensor] = []
        for step in range(20):
            loss = _step(model, opt)
            if step >= 9:
                kept.append(loss)
            if reported_at is None and _graph_findings(mw):
                reported_at = step
    # THEN it is reported by step 14, naming the list
    assert reported_at is not None and reported_at <= 14
    assert _graph_findings(mw)[0].variable == "kept"


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(8, 16)
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.cell(x, h)
        return self.head(h), h


def test_hidden_state_detached_at_each_batch_is_silent() -> None:
    # GIVEN truncated BPTT done right: the state is detached at the start of each batch
    torch.manual_seed(0)
    model = Recurrent()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        hidden = torch.zeros(4, 16)
        for _ in range(20):
            hidden = hidden.detach()
            loss = torch.zeros(())
            for _t in range(5):
                out, hidden = model(torch.randn(4, 8), hidden)
                loss = loss + out.pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    # THEN no graph accumulation is reported
    assert _graph_findings(mw) == []


def test_a_state_that_stops_being_detached_late_is_reported_within_five_steps() -> None:
    # GIVEN truncated BPTT done right for 30 steps (``hidden`` rebound, never reaching its
    #       previous graph: memwatch then searches it only every other step), after which
    #       the state is no longer detached
    #       (retain_graph and a ``p.data`` update keep torch quiet, as in the RNN sample)
    torch.manual_seed(0)
    model = Recurrent()
    start, reported_at = 30, None
    with memwatch(store=False) as mw:
        hidden = torch.zeros(4, 16)
        for step in range(start + 10):
            if step < start:
                hidden = hidden.detach()
            out, hidden = model(torch.randn(4, 8), hidden)
            loss = out.pow(2).mean()
            model.zero_grad()
            loss.backward(retain_graph=True)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-0.01)
            # WHEN we look at the findings after each step
            if reported_at is None and _graph_findings(mw):
                reported_at = step
    # THEN the leak of `hidden` is reported within five steps of its start
    assert reported_at is not None and reported_at <= start + 5
    assert _graph_findings(mw)[0].variable == "hidden"


def test_episodes_growing_longer_within_each_step_are_silent() -> None:
    # GIVEN a policy-gradient style loop whose episode (and graph) is longer every step,
    #       but built afresh inside the step
    torch.manual_seed(0)
    policy = nn.Linear(4, 2)
    opt = torch.optim.SGD(policy.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for episode in range(16):
            log_probs = []
            for _t in range(3 + 2 * episode):
                logits = policy(torch.randn(1, 4))
                log_probs.append(torch.log_softmax(logits, dim=-1)[0, 0])
            loss = -torch.stack(log_probs).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    # THEN nothing is reported: the graph is bigger each step but reaches no earlier step
    assert _graph_findings(mw) == []


def test_best_model_copy_rebound_loss_and_a_kept_previous_loss_are_silent() -> None:
    # GIVEN a loop that keeps a deepcopy of the best model, rebinds `loss` each step and
    #       keeps last step's loss tensor one step longer (held, not extended)
    model, opt = _mlp()
    with memwatch(store=False) as mw:
        best, best_model, previous = float("inf"), None, None
        for _ in range(16):
            loss = _step(model, opt)
            if loss.item() < best:
                best, best_model = loss.item(), copy.deepcopy(model)
            previous = loss
    # THEN no graph accumulation is reported
    assert _graph_findings(mw) == []
    assert best_model is not None and previous is not None


class CachingModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)
        self.cache: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        self.cache = out if self.cache is None else torch.cat([self.cache, out])
        return out


def test_a_module_cache_with_grad_fn_is_named_at_its_assignment_in_the_class() -> None:
    # GIVEN a module caching its outputs (with their graphs) in an attribute
    torch.manual_seed(0)
    model = CachingModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with memwatch(store=False) as mw:
        for _ in range(12):
            loss = model(torch.randn(2, 16)).pow(2).mean()
            opt.zero_grad()
            loss.backward(retain_graph=True)
            opt.step()
    # THEN the cache is reported where the class extends it, with a detach fix
    finding = _graph_findings(mw)[0]
    assert finding.variable == "model.cache"
    assert finding.location is not None and finding.location.function == "forward"
    assert "torch.cat([self.cache, out])" in finding.evidence["statement"]
    assert "out.detach()" in finding.fix


# -- the pure detector -----------------------------------------------------------------------
def _event(step: int, location: Location | None = None, **data: Any) -> Event:
    base: dict[str, Any] = {
        "variable": "running_loss",
        "holder": "running_loss",
        "scope": "local",
        "container": False,
        "is_tuple": False,
        "nodes_per_step": 8,
        "nodes": 80,
        "first_step": 3,
        "steps_seen": 2,
        "hit_streak": 2,
        "tensor_bytes": 4,
        "tensor_growth_per_step": 0,
        "node_bytes_estimate": 700,
        "saved_stale_bytes": 0,
        "frame_function": "train",
    }
    base.update(data)
    return Event(KIND, step, 0.0, base, location or Location("train.py", 42, "train"))


def _detect(*events: Event) -> list[Finding]:
    return graph_accumulation.detect(AnalysisInput(steps=(), events=events))


def test_detector_titles_the_variable_with_nodes_per_step_and_first_step() -> None:
    # GIVEN two events for the same holder (confirmation, then an update)
    findings = _detect(
        _event(5, statement="running_loss += loss", pattern="augassign", operands=["loss"]),
        _event(
            13, statement="running_loss += loss", pattern="augassign", operands=["loss"], nodes=144
        ),
    )
    # THEN one error, titled as a person would say it, numbers from the latest event
    (finding,) = findings
    assert finding.title == (
        "`running_loss` keeps the autograd graph of every step (+8 nodes/step since step 3)"
    )
    assert finding.severity == "error" and finding.first_step == 3
    assert finding.fix.startswith("Accumulate `loss.item()` instead of `loss`")
    assert finding.growth_per_step_bytes == 8 * 700
    assert finding.bytes == 144 * 700 + 4


@pytest.mark.parametrize(
    ("pattern", "statement", "operands", "expected"),
    [
        (
            "accumulate",
            "total = total + loss * n",
            ["loss", "n"],
            "`total = total + loss.item() * n`",
        ),
        ("store", "history[step] = loss", ["loss"], "`history[step] = loss.item()`"),
        ("method-call", "meter.update(loss, n)", ["loss", "n"], "`meter.update(loss.item(), n)`"),
        (
            "concat",
            "self.cache = torch.cat([self.cache, out])",
            ["out"],
            "`self.cache = torch.cat([self.cache, out.detach()])`",
        ),
        ("carry", "out, hidden = model(x, hidden)", ["x"], "`hidden = hidden.detach()`"),
    ],
)
def test_detector_fix_rewrites_the_statement(
    pattern: str, statement: str, operands: list[str], expected: str
) -> None:
    # GIVEN an event whose statement has a known shape
    variable = {"concat": "self.cache", "carry": "hidden", "method-call": "meter.sum"}.get(
        pattern, "total"
    )
    (finding,) = _detect(
        _event(4, variable=variable, statement=statement, pattern=pattern, operands=operands)
    )
    # THEN the fix spells out the corrected statement
    assert expected in finding.fix


def test_detector_reports_holders_extended_by_one_statement_once() -> None:
    # GIVEN two holders (meter.sum, meter.avg) confirmed at the same statement
    where = Location("train.py", 50, "train")
    findings = _detect(
        _event(
            4,
            where,
            variable="meter.sum",
            statement="meter.update(loss)",
            pattern="method-call",
            operands=["loss"],
        ),
        _event(
            5,
            where,
            variable="meter.avg",
            statement="meter.update(loss)",
            pattern="method-call",
            operands=["loss"],
        ),
    )
    # THEN one finding names the first and mentions the second
    (finding,) = findings
    assert finding.variable == "meter.sum"
    assert finding.evidence["also"] == ["meter.avg"]


def test_detector_without_events_finds_nothing() -> None:
    assert _detect() == []


# -- locating statements ---------------------------------------------------------------------
def _loop_with_statements() -> None:  # parsed, never run
    total = 0.0
    losses: list[Any] = []
    hidden = None
    for _ in range(3):
        loss = torch.zeros(())
        out, hidden = torch.nn.GRU(1, 1)(torch.zeros(1, 1, 1), hidden)
        total += loss
        losses.append(loss)
    del out


@pytest.mark.parametrize(
    ("target", "pattern", "text"),
    [
        ("total", "augassign", "total += loss"),
        ("losses", "store", "losses.append(loss)"),
        ("hidden", "carry", "out, hidden = torch.nn.GRU(1, 1)(torch.zeros(1, 1, 1), hidden)"),
    ],
)
def test_source_finds_the_extending_statement(target: str, pattern: str, text: str) -> None:
    code = _loop_with_statements.__code__
    # WHEN the function's source is searched for what extends `target`
    found = find_in_function(
        code.co_filename, code.co_firstlineno, code.co_name, target, prefer=["loss"]
    )
    # THEN the right statement and shape come back (not the initial assignment)
    assert found is not None and found.pattern == pattern and found.text == text


def test_source_finds_an_attribute_extended_inside_a_class() -> None:
    found = find_in_class(__file__, "CachingModel", "self.cache")
    assert found is not None and found.pattern == "concat" and found.function == "forward"


def _unused(fn: Callable[..., Any]) -> None:  # keeps the parsed helper referenced
    del fn


_unused(_loop_with_statements)


def test_fix_for_a_running_total_is_item_and_for_carried_state_is_detach() -> None:
    # GIVEN the statements that extend a graph across steps
    from memwatch.analysis.detectors.graph_accumulation import suggest_fix

    # WHEN a fix is suggested for each
    total = suggest_fix("running_loss", "augassign", "running_loss += loss", ["loss"])
    ema = suggest_fix(
        "context", "accumulate", "context = 0.9 * context + 0.1 * features", ["0.9", "features"]
    )
    # THEN a running total sums numbers, while state fed back into itself is detached
    assert "running_loss += loss.item()" in total
    assert "context = context.detach()" in ema
    assert "0.9.item()" not in ema and "features.item()" not in ema


def test_detector_needs_proof_before_it_reports() -> None:
    # GIVEN one hit only: this step's graph reached last step's root once, and the walk
    # saw one earlier step (a carried-over graph, as in truncated BPTT)
    single = _event(5, hit_streak=1, history_steps=1)
    # WHEN judged THEN nothing; WHEN the next step hits again THEN the growth is proven
    assert _detect(single) == []
    (finding,) = _detect(single, _event(6, hit_streak=2, history_steps=1))
    assert finding.evidence["confirmed_step"] == 6


def test_held_bytes_follow_a_long_leak_past_the_walk_cap() -> None:
    # GIVEN a leak proven at step 5 and still measured at step 57,000, where the graph
    # walk stopped at its cap of 4096 nodes (8 new nodes per step)
    early = _event(5, nodes=24)
    late = _event(57_000, nodes=4096, nodes_capped=True)
    # WHEN judged THEN the bytes held grow with the steps the leak spans (not frozen at
    # the cap's 2.7 MiB), and the finding says over how many steps
    (finding,) = _detect(early, late)
    assert finding.bytes is not None and finding.bytes >= 8 * (57_000 - 3) * 700
    assert finding.evidence["steps_affected"] == 57_000 - 3 + 1
    assert finding.evidence["graph_nodes_estimated"] is True


def test_the_check_keeps_almost_nothing_alive_in_a_long_leak() -> None:
    # GIVEN `total = total + loss` for a few hundred steps, already reported
    import tracemalloc

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    total: Any = 0.0
    steps = 320
    with memwatch(store=False) as mw:
        for i in range(64 + steps):
            loss = model(torch.randn(8, 16)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total = total + loss
            if i == 63:
                assert KIND in problems(mw.findings)
                tracemalloc.start()
        # WHEN we look at what the graph check allocated since and is still alive
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
    held = sum(
        stat.size
        for stat in snapshot.statistics("filename")
        if stat.traceback[0].filename.endswith("graph_probe.py")
    )
    # THEN it is a few bytes per step (~75 alone; more when a loaded machine escalates
    #      the scans), most of it its bounded bookkeeping (a watermark per step, the
    #      evidence it records): it does not search (and so make torch wrap, and the leak
    #      keep) each node the leak adds, which held ~260 B per step
    assert held / steps < 128, f"{held / steps:.0f} B per step held by the graph check"


def test_truncated_bptt_with_a_window_of_three_stays_silent_over_a_long_run() -> None:
    # GIVEN a GRU cell whose hidden state is detached every 3 steps, for 200 steps (its
    #       graph reaches back one or two steps, now and then: single hits, never a run)
    torch.manual_seed(0)
    cell, head = nn.GRUCell(8, 16), nn.Linear(16, 1)
    params = [*cell.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=0.01)
    with memwatch(store=False) as mw:
        hidden = torch.zeros(4, 16)
        for step in range(200):
            if step % 3 == 0:
                hidden = hidden.detach()
            hidden = cell(torch.randn(4, 8), hidden)
            loss = head(hidden).pow(2).mean()
            opt.zero_grad()
            loss.backward(retain_graph=True)
            for p in params:  # updated outside autograd: the kept graphs stay usable
                p.data.add_(p.grad, alpha=-0.01)
    # THEN the hidden state is not reported as a growing graph
    assert KIND not in problems(mw.findings)


def test_a_running_average_of_a_long_unroll_that_loses_its_detach_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a loss over a 40-step GRU unroll (~600 autograd nodes a step, more than a full
    #       search visits), averaged into `running` with `detach()` for 30 steps, after
    #       which the `detach()` is gone; every search of the graph check is recorded
    from memwatch.collect import graph_probe

    searches: list[tuple[int, int]] = []  # (cap, nodes visited)
    original = graph_probe._reaches

    def recording(root: Any, target: int, count: bool = True, cap: int = 512) -> Any:
        found, nodes, capped = original(root, target, count, cap)
        searches.append((cap, nodes))
        return found, nodes, capped

    monkeypatch.setattr(graph_probe, "_reaches", recording)
    torch.manual_seed(0)
    model = Recurrent()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    start, reported_at, quiet_before = 30, None, 0
    with memwatch(store=False) as mw:
        running: Any = torch.zeros(())
        for step in range(start + 10):
            hidden = torch.zeros(4, 16)
            loss = torch.zeros(())
            for _t in range(40):
                out, hidden = model(torch.randn(4, 8), hidden)
                loss = loss + out.pow(2).mean()
            opt.zero_grad()
            loss.backward(retain_graph=True)
            opt.step()
            running = (running.detach() if step < start else running) * 0.9 + loss * 0.1
            if step == start - 1:
                quiet_before = len([s for s in searches if s[0] == graph_probe.QUIET_BFS_CAP])
            # WHEN we look at the findings after each step
            if reported_at is None and KIND in problems(mw.findings):
                reported_at = step
    # THEN the healthy steps' searches of the big graphs were short ones, and the leak is
    #      still reported within five steps of its start, on `running`
    assert quiet_before > 0
    assert all(nodes <= cap for cap, nodes in searches)
    assert reported_at is not None and reported_at <= start + 5
    assert _graph_findings(mw)[0].variable == "running"


@pytest.mark.parametrize("retain", [False, True])
def test_the_loss_backward_ran_from_is_not_searched_but_a_running_value_beside_it_is(
    monkeypatch: pytest.MonkeyPatch, retain: bool
) -> None:
    # GIVEN a loop whose `loss` is the root of each step's backward, beside a running
    #       value that carries a fresh graph each step (detached, then no longer at step
    #       30), with every search of the graph check recorded by the root it starts from
    from memwatch.collect import graph_probe

    searched: list[int] = []  # sequence numbers of the roots searched
    original = graph_probe._reaches

    def recording(root: Any, target: int, count: bool = True, cap: int = 512) -> Any:
        searched.append(root._sequence_nr())
        return original(root, target, count, cap)

    monkeypatch.setattr(graph_probe, "_reaches", recording)
    model, opt = _mlp()
    start, reported_at = 30, None
    loss_roots: list[int] = []
    with memwatch(store=False) as mw:
        running: Any = torch.zeros(())
        for step in range(start + 10):
            loss = model(torch.randn(8, 16)).pow(2).mean()
            loss_roots.append(loss.grad_fn._sequence_nr())
            opt.zero_grad()
            # WHEN backward runs from `loss` (keeping its graph or not)
            loss.backward(retain_graph=retain)
            opt.step()
            running = (running.detach() if step < start else running) * 0.9 + loss
            if reported_at is None and KIND in problems(mw.findings):
                reported_at = step
    # THEN `loss` is searched only when its backward kept the graph (which could then be
    #      reached from a later step's), ...
    searched_losses = set(searched) & set(loss_roots)
    assert bool(searched_losses) == retain
    # ... and the running value that loses its detach() is still reported (a quiet name is
    #     searched every few steps on steps this short: the k+5 stories are in
    #     test_sampling.py and above)
    assert reported_at is not None and reported_at <= start + 8
    assert _graph_findings(mw)[0].variable == "running"
