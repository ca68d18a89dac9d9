"""``microbatch-graph-accumulation``: micro-batch losses summed before one backward.

Evidence (``microbatch-backward`` events): one backward used the graphs of three or more
root forwards (known from hooks on their outputs), the graphs were all alive when it
started (saved bytes before it ≈ the forwards' sum), and the backward's root only sums,
averages or scales separate losses (walking ``Add``/``Mean``/``Stack``/``Div`` nodes finds
at least one loss per forward). Such losses could each have had their own backward, and
gradients accumulate in ``.grad`` anyway: peak memory would be one micro-batch's graph
instead of all of them.

Losses that couple the forwards (contrastive, triplet: the root is not a sum) do not
qualify, nor do single-sample forwards (``unbatched-forward`` gives the better fix there).
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import per_step_latest, site
from memwatch.evidence import MicrobatchBackward
from memwatch.records import Finding
from memwatch.units import format_size

KIND = "microbatch-graph-accumulation"


def detect(data: AnalysisInput) -> list[Finding]:
    events = per_step_latest(data.observed(MicrobatchBackward))
    if len(events) < 2 and not (data.final and events):
        return []
    first = events[0]
    location, variable = site(first)
    worst = max(events, key=lambda e: e.evidence.saved_before)
    n = worst.evidence.forwards
    one = worst.evidence.forward_bytes
    graphs = worst.evidence.graphs_bytes
    saved = worst.evidence.saved_before
    target = variable or "loss"
    where = f" at {location}" if location else ""
    return [
        Finding(
            kind=KIND,
            severity="warning",
            title=(
                f"{n} micro-batch graphs are alive at once before `{target}.backward()` "
                f"({format_size(graphs)})"
            ),
            detail=(
                f"The backward{where} used the graphs of {n} forward passes whose losses were "
                f"summed first, so all their saved activations ({format_size(graphs)}, "
                f"~{format_size(one)} each; {format_size(saved)} saved in all when it "
                f"started) were alive together in {len(events)} step"
                f"{'s' if len(events) != 1 else ''}. A backward per micro-batch keeps one "
                f"graph at a time and saves about {format_size(max(0, graphs - one))}."
            ),
            first_step=first.step,
            fix=(
                "Call `(loss / n).backward()` inside the micro-batch loop (gradients add up "
                "in `.grad`) instead of summing the losses and calling backward once."
            ),
            location=location,
            variable=variable,
            bytes=graphs or None,
            evidence={
                "steps": [e.step for e in events[-16:]],
                "forwards_per_backward": n,
                "separate_losses": worst.evidence.branches,
                "forward_bytes": one,
                "graphs_bytes": graphs,
                "saved_before_backward": saved,
            },
        )
    ]


DETECTOR = Detector(KIND, (MicrobatchBackward,), detect)
