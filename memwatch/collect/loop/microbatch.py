"""Evidence for ``microbatch-graph-accumulation``: one backward over summed micro-batch losses.

When one backward used the graphs of three or more root forwards (known from the
forwards recorder), the graphs were all alive when it started (saved bytes before it ≈
their sum), and walking only the combining nodes (``Add``/``Mean``/``Stack``/``Div``...)
from its root finds at least one separate loss per forward, ``MicrobatchBackward`` is
recorded at the step end (the worst backward of the step).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from memwatch.collect.frames import first_user_frame
from memwatch.collect.loop.common import Site, Thinning, call_at, location_of, site_of
from memwatch.evidence import MicrobatchBackward

if TYPE_CHECKING:
    from memwatch.collect.loop.forwards import Forward
    from memwatch.collect.probe import BackwardCall, ProbeHost

_Tensor = torch.Tensor

#: autograd nodes that only combine losses (sum, mean, scale): what lies below them are
#: separate losses, which could have had separate backward passes.
_COMBINING = frozenset(
    {
        "AddBackward0",
        "AddBackward1",
        "SubBackward0",
        "SubBackward1",
        "SumBackward0",
        "SumBackward1",
        "MeanBackward0",
        "MeanBackward1",
        "StackBackward0",
        "CatBackward0",
        "DivBackward0",
        "DivBackward1",
        "MulBackward0",
        "MulBackward1",
        "NegBackward0",
        "ViewBackward0",
        "UnsqueezeBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
    }
)


class MicrobatchRecorder:
    """Backwards of the step that summed several forwards' separable losses."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seen: list[tuple[MicrobatchBackward, Site | None]] = []

    def check(self, call: BackwardCall, consumed: list[Forward]) -> bool:
        """Several forwards whose graphs one backward used: separate losses summed?"""
        n = len(consumed)
        if not all(e.counted for e in consumed):
            return False  # a step that counts no saved tensors (sampling): sizes unknown
        if sum(1 for e in consumed if e.unbatched) * 2 > n:
            return False  # single samples, one by one: unbatched-forward tells the better fix
        total = sum(e.bytes for e in consumed)
        if call.saved_before < 0.7 * total:
            return False  # the graphs were not all alive at once
        branches = separate_losses(call.tensors, limit=4 * n + 32)
        if branches < n:
            return False  # one loss couples the forwards (contrastive, triplet)
        site = site_of(first_user_frame(call.frame))
        sizes = sorted(e.bytes for e in consumed)
        measured = MicrobatchBackward(
            forwards=n,
            branches=branches,
            forward_bytes=sizes[n // 2],
            graphs_bytes=total,
            saved_before=call.saved_before,
        )
        self.seen.append((measured, site))
        return True

    def record(self, tracker: ProbeHost, step: int, thinning: Thinning) -> None:
        if not self.seen or not thinning.allow("microbatch-backward", step):
            return
        worst, site = max(self.seen, key=lambda m: m[0].saved_before)
        call = call_at(site, "backward")
        variable = None
        if call is not None:
            variable = call.receiver if call.method == "backward" else call.first_arg
        evidence = dataclasses.replace(worst, backwards=len(self.seen), variable=variable)
        tracker.emit(evidence.event(step, location_of(site)))


def separate_losses(tensors: Any, limit: int) -> int:
    """How many separate losses a backward root sums (walks only the combining nodes)."""
    if isinstance(tensors, _Tensor):
        roots = [tensors]
    elif isinstance(tensors, (tuple, list)):
        roots = [t for t in tensors if isinstance(t, _Tensor)]
    else:
        return 0
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen: set[int] = set()
    keep: list[Any] = []  # hold the nodes while walking so that their ids stay unique
    losses = 0
    while stack and len(seen) < limit:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        keep.append(node)
        if node.name() not in _COMBINING:
            losses += 1
            continue
        for child, _ in node.next_functions:
            if child is not None and type(child).__name__ != "AccumulateGrad":
                stack.append(child)
    return losses
