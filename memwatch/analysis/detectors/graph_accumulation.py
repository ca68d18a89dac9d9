"""``graph-accumulation``: a tensor alive across steps keeps an autograd graph that grows.

Evidence: ``GraphAccumulation`` measurements from ``memwatch.collect.graph_probe``, each
recorded when this step's graph of a name contained last step's root of the same name (a
hit). The growth is proven (``proves``) when one graph's history spans at least
``MIN_HISTORY_STEPS`` earlier steps or the hits came ``MIN_HIT_STREAK`` steps running; one
proof is enough for an error. Later measurements of the same holder refresh the numbers,
the earliest gives ``first_step``.

The numbers follow the leak as it goes on: a graph walk is capped (``graph_probe``'s
``WALK_CAP``), so past the cap the graph's size is estimated from its growth per step
and the steps it spans, rather than frozen at the cap (a leak found at step 30 of a
57,000-step run must not still say "holds 2.7 MiB").

The finding names the variable (``running_loss``, ``losses``, ``hidden``, ``meter.sum``,
``model.cache``) and the statement that extends it, and writes the fix for that
statement's shape: ``+=`` → add ``loss.item()``; ``.append(loss)`` → append
``loss.item()``; state fed back into the model → detach it at the start of each batch;
``meter.update(loss)`` → pass ``loss.item()``; ``cache = torch.cat([cache, out])`` →
store ``out.detach()``. Holders extended by the same statement (``meter.sum`` and
``meter.avg``) are reported once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.evidence import GraphAccumulation, Observed
from memwatch.records import Finding
from memwatch.units import format_size

KIND = "graph-accumulation"
MIN_HISTORY_STEPS = 2
MIN_HIT_STREAK = 2
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w.]*$")


def detect(data: AnalysisInput) -> list[Finding]:
    events = data.observed(GraphAccumulation)
    if not events:
        return []
    proven = {e.evidence.variable for e in events if proves(e)}
    groups: dict[tuple[Any, ...], list[Observed[GraphAccumulation]]] = {}
    for event in events:
        if event.evidence.variable in proven:
            groups.setdefault(_group_key(event), []).append(event)
    return [_finding(group) for group in groups.values()]


def proves(seen: Observed[GraphAccumulation]) -> bool:
    """Whether this measurement proves the graph grows (not one carried-over graph)."""
    g = seen.evidence
    return g.history_steps >= MIN_HISTORY_STEPS or g.hit_streak >= MIN_HIT_STREAK


def proven(data: AnalysisInput) -> list[Observed[GraphAccumulation]]:
    """The measurements of names whose graph growth is proven (for other detectors)."""
    events = data.observed(GraphAccumulation)
    names = {e.evidence.variable for e in events if proves(e)}
    return [e for e in events if e.evidence.variable in names]


def _group_key(event: Observed[GraphAccumulation]) -> tuple[Any, ...]:
    loc = event.location
    if loc is not None and event.evidence.statement:
        return ("at", loc.file, loc.line)
    return ("var", event.evidence.variable, loc.file if loc else None)


def _finding(events: list[Observed[GraphAccumulation]]) -> Finding:
    events = sorted(events, key=lambda e: e.step)
    last = events[-1]
    d = last.evidence
    variables = list(dict.fromkeys(str(e.evidence.variable) for e in events))
    variable = variables[0]
    first_steps = [int(e.evidence.first_step) for e in events if e.evidence.first_step is not None]
    first_step = min(first_steps) if first_steps else events[0].step
    nodes_per_step = d.nodes_per_step
    capped = d.nodes_per_step_capped
    node_bytes = d.node_bytes_estimate
    tensor_growth = d.tensor_growth_per_step
    stale_growth = _stale_growth(events)
    growth = tensor_growth + nodes_per_step * node_bytes + stale_growth
    steps_affected = max(1, last.step - first_step + 1)
    nodes = d.nodes
    estimated = d.nodes_capped and not d.container
    if estimated:  # the walk stopped at its cap: the graph has grown past it since
        nodes = max(nodes, nodes_per_step * steps_affected)
    held = d.tensor_bytes + nodes * node_bytes + d.saved_stale_bytes
    per_step = f"{'≥' if capped else '+'}{nodes_per_step} nodes/step"
    what = (
        "keeps the autograd graphs of every step"
        if d.container
        else ("keeps the autograd graph of every step")
    )
    title = f"`{variable}` {what} ({per_step} since step {first_step})"
    statement = d.statement
    fix = suggest_fix(
        variable,
        d.pattern,
        statement,
        d.operands or (),
        d.is_tuple,
        d.container,
    )
    detail = _detail(
        last, variable, variables, first_step, nodes_per_step, nodes, statement, growth
    )
    evidence: dict[str, Any] = {
        "nodes_per_step": nodes_per_step,
        "nodes_per_step_capped": capped,
        "graph_nodes": nodes,
        "graph_nodes_capped": d.nodes_capped,
        "graph_nodes_estimated": estimated,
        "steps_seen": d.steps_seen,
        "steps_affected": steps_affected,
        "confirmed_step": next((e.step for e in events if proves(e)), None),
        "last_step": last.step,
        "holder": d.holder,
        "scope": d.scope,
        "tensor_bytes": d.tensor_bytes,
        "tensor_growth_per_step_bytes": tensor_growth,
        "graph_bytes_estimate_per_node": node_bytes,
        "saved_stale_growth_per_step_bytes": stale_growth,
    }
    if statement:
        evidence["statement"] = statement
        evidence["pattern"] = d.pattern
    if len(variables) > 1:
        evidence["also"] = variables[1:]
    if d.container:
        evidence["length"] = d.length
    return Finding(
        kind=KIND,
        severity="error",
        title=title,
        detail=detail,
        first_step=first_step,
        fix=fix,
        location=last.location,
        variable=variable,
        bytes=held or None,
        growth_per_step_bytes=growth or None,
        evidence=evidence,
    )


def _stale_growth(events: Sequence[Observed[GraphAccumulation]]) -> int:
    """Per-step growth of saved-for-backward bytes kept from earlier steps, if it rose."""
    if len(events) < 2:
        return 0
    first, last = events[0], events[-1]
    span = last.step - first.step
    rise = last.evidence.saved_stale_bytes - int(first.evidence.saved_stale_bytes or 0)
    return rise // span if span > 0 and rise > 0 else 0


def _detail(
    last: Observed[GraphAccumulation],
    variable: str,
    variables: list[str],
    first_step: int,
    nodes_per_step: int,
    nodes: int,
    statement: str | None,
    growth: int,
) -> str:
    d = last.evidence
    where = _scope_words(d, variable)
    if d.container:
        held = (
            f"{where} holds {d.length} tensors that each still carry "
            f"their step's autograd graph (~{nodes_per_step} nodes each)"
        )
    else:
        size = f"~{nodes}" if d.nodes_capped else str(nodes)
        held = (
            f"{where} is a tensor whose autograd history reaches back to step {first_step} "
            f"({size} graph nodes at step {last.step}, {nodes_per_step} more each step)"
        )
    text = f"{held}: every step's graph stays in memory and the memory grows without bound"
    if growth:
        text += f" (about {format_size(growth)}/step)"
    text += "."
    if statement:
        text += f" The statement that extends it: `{statement}`."
    if len(variables) > 1:
        others = ", ".join(f"`{v}`" for v in variables[1:])
        text += f" The same statement also grows {others}."
    return text


def _scope_words(d: GraphAccumulation, variable: str) -> str:
    scope = d.scope
    function = d.frame_function
    if scope == "module":
        owner = d.owner_class
        return f"`{variable}` (an attribute of {_a(owner)} module)" if owner else f"`{variable}`"
    if scope == "attribute":
        owner = d.owner_class
        return f"`{variable}` (an attribute of {_a(owner)} object)" if owner else f"`{variable}`"
    if scope == "global":
        return f"`{variable}` (a module-level variable)"
    return f"`{variable}` (a local of {function}())" if function else f"`{variable}`"


def _tensor_operand(operands: Sequence[str]) -> str | None:
    """The operand to rewrite: a plain name (``loss``), never a constant or an expression.

    Bare names come before attributes: in ``total + args.micro * loss`` the tensor is
    ``loss``, not the configuration value ``args.micro``.
    """
    names = [o for o in operands if _IDENTIFIER.match(o)]
    bare = [o for o in names if "." not in o]
    chosen = bare or names
    return chosen[0] if chosen else None


def _is_plain_sum(variable: str, statement: str) -> bool:
    """``v += x`` or ``v = v + x`` (``x`` free of ``v``): a running total, fixed by ``.item()``.

    Anything else that feeds the holder back into itself (``c = 0.9 * c + 0.1 * f``, an
    exponential average carried between steps) is state to detach, not a number to sum.
    """
    v = re.escape(variable)
    name = re.compile(rf"(?<![\w.]){v}(?![\w])")
    for form in (
        rf"\s*{v}\s*\+=(?P<x>.+)",
        rf"\s*{v}\s*=\s*{v}\s*\+(?P<x>.+)",
        rf"\s*{v}\s*=(?P<x>.+)\+\s*{v}\s*",
    ):
        match = re.fullmatch(form, statement)
        if match and not name.search(match.group("x")):
            return True
    return False


def _rewrite(statement: str, operand: str, suffix: str) -> str | None:
    """``statement`` with ``operand`` replaced by ``operand<suffix>`` (first free use)."""
    if _IDENTIFIER.match(operand):
        pattern = re.compile(rf"(?<![\w.]){re.escape(operand)}(?![\w(])")
        replacement = operand + suffix
    else:
        pattern = re.compile(re.escape(operand))
        replacement = f"({operand}){suffix}"
    # Rewrite only what is stored/added: after the operator or inside the call.
    cut = _value_start(statement)
    head, tail = statement[:cut], statement[cut:]
    new_tail, count = pattern.subn(lambda _: replacement, tail, count=1)
    return head + new_tail if count else None


def _value_start(statement: str) -> int:
    for marker in ("+=", "-=", "*=", "|=", "="):
        index = statement.find(marker)
        if index >= 0 and not statement[index:].startswith("=="):
            return index + len(marker)
    index = statement.find("(")
    return index + 1 if index >= 0 else 0


def suggest_fix(
    variable: str,
    pattern: str | None,
    statement: str | None,
    operands: Sequence[str],
    is_tuple: bool = False,
    container: bool = False,
) -> str:
    """One concrete sentence telling what to write instead, from the statement's shape."""
    operand = _tensor_operand(operands)
    if pattern == "carry":
        if is_tuple:
            return (
                f"Detach the hidden state at the start of each batch: `{variable} = "
                f"tuple(h.detach() for h in {variable})`, so backward stops at the batch "
                "boundary and old graphs are freed."
            )
        return (
            f"Detach the hidden state at the start of each batch: `{variable} = "
            f"{variable}.detach()`, so backward stops at the batch boundary and old graphs "
            "are freed."
        )
    if statement and operand:
        if pattern in ("augassign", "accumulate"):
            new = _rewrite(statement, operand, ".item()")
            if new and _is_plain_sum(variable, statement):
                return (
                    f"Accumulate `{operand}.item()` instead of `{operand}`: write `{new}` "
                    "(a Python number keeps no graph)."
                )
            return (
                f"`{variable}` is carried from step to step with its graph: detach it where "
                f"it enters the next step (`{variable} = {variable}.detach()` at the start of "
                "each step), or keep `.item()` values if only a number is needed."
            )
        if pattern == "store":
            new = _rewrite(statement, operand, ".item()")
            if new:
                return (
                    f"Store `{operand}.item()` (or `{operand}.detach()` if you need a tensor) "
                    f"instead of `{operand}`: `{new}`."
                )
        if pattern == "method-call":
            new = _rewrite(statement, operand, ".item()")
            if new:
                return (
                    f"Pass `{operand}.item()` (or `{operand}.detach()`) instead of `{operand}`: "
                    f"`{new}`, so `{variable}` stores a number, not the graph."
                )
        if pattern == "concat":
            new = _rewrite(statement, operand, ".detach()")
            if new:
                return (
                    f"Store `{operand}.detach()` instead of `{operand}`: `{new}`; the cached "
                    "tensor then carries no graph from earlier steps."
                )
    if container:
        return (
            f"Store `.item()` or `.detach()` of each tensor in `{variable}`, not the tensor "
            "itself, so each step's graph can be freed."
        )
    return (
        f"Keep `.item()` or `.detach()` in `{variable}` instead of a tensor that carries its "
        "graph, so each step's graph can be freed."
    )


def _a(word: str) -> str:
    """``a Meter`` / ``an AverageMeter``."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


DETECTOR = Detector(KIND, (GraphAccumulation,), detect)
