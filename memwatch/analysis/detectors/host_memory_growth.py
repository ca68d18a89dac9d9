"""``host-memory-growth``: process RSS grows steadily across steps.

Pure rule on ``StepRecord.rss_bytes``; no probe. A real run's RSS is noisy: the
allocator grows and trims its heap, the first steps warm caches up, an evaluation pass
adds a buffer once. So the rule asks for a trend that survives all of that:

* only training steps after warm-up (``warmup`` steps, at least a tenth of the run) and
  at least 12 of them; the closing partial step is ignored;
* **steady**: the steps are cut into up to 8 consecutive blocks and the block *medians*
  must rise from block to block (all but one rise when there are 5+ blocks), and no
  single rise may carry more than half of the growth (a one-off jump is not a leak);
* **large**: last block median − first ≥ 48 MiB and ≥ 5 % of the starting RSS;
* the slope reported is Theil-Sen (median of pairwise slopes);
* on a CPU run tensors live in host memory too, so when autograd-saved peaks (longer
  episodes, bigger batches) or tracked tensor bytes grow at half that pace or more, or
  saved bytes kept past the step ends climb steadily (a graph leak, which drags along
  more than the saved bytes), the growth is the tensors' (``memory-growth``,
  ``graph-accumulation``, ``retain-graph-leak`` name them) and this stays silent.

* the census (``collect/census.py``, ``CensusTotals`` evidence) counts the tensor and
  numpy bytes reachable from the program's roots and the items of the containers holding
  them: when that reachable data grows at half the RSS pace or more, the holders that
  grow are named by ``memory-growth`` and this stays silent; when the censuses spanning
  the growth saw it flat (neither bytes nor items), RSS is rising without data the
  program keeps (the allocator keeping freed blocks as batches grow, garbage awaiting
  the collector), and the finding is only ``info``.

memwatch does not see which Python objects grow (that needs ``tracemalloc``, too costly
to keep on), so the finding has no location and says so.
"""

from __future__ import annotations

from itertools import pairwise

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import (
    TRAINING_BOUNDARIES,
    block_medians,
    theil_sen,
)
from memwatch.evidence import CensusTotals, Observed
from memwatch.records import Finding, StepRecord
from memwatch.units import format_size

KIND = "host-memory-growth"
MiB = 1024 * 1024
MIN_STEPS = 12
MAX_BLOCKS = 8
MIN_GROWTH_BYTES = 48 * MiB
MIN_GROWTH_FRACTION = 0.05
MAX_JUMP_SHARE = 0.5
TENSOR_SHARE = 0.5  # tensors growing at this fraction of the RSS slope explain it
#: Reachable data (census) that grew by less than this share of the RSS growth is "flat".
CENSUS_FLAT_SHARE = 0.1
#: ... and its container items by less than this many per step.
CENSUS_FLAT_ITEMS_PER_STEP = 1.0


def _judged_steps(data: AnalysisInput) -> list[StepRecord]:
    steps = [s for s in data.steps if s.boundary in TRAINING_BOUNDARIES and s.rss_bytes]
    skip = max(data.warmup, len(steps) // 10)
    return steps[skip:]


def _tensors_explain(steps: list[StepRecord], xs: list[float], slope: float, total: float) -> bool:
    """On a CPU run, tensor memory growing alongside RSS is the cause (another kind names it).

    Autograd-saved peaks growing at half the RSS pace mean bigger activations (longer
    episodes); saved bytes surviving the step ends that rise steadily too, by at least a
    tenth of the RSS growth, mean graphs kept alive (a tensor leak drags along outputs and
    graph objects that the saved-bytes counter does not see, so RSS grows faster).
    """
    # Only the steps whose saved tensors were counted (sampling: the others hold None).
    counted = [(x, s) for x, s in zip(xs, steps) if s.saved_bytes is not None]
    cxs = [x for x, _ in counted]
    peaks = [float(s.saved_peak_bytes or 0) for _, s in counted]
    if len(counted) >= 2 and theil_sen(cxs, peaks) >= TENSOR_SHARE * slope:
        return True
    ends = [float(s.saved_bytes or 0) for _, s in counted]
    kept = block_medians(ends, min(MAX_BLOCKS, len(ends) // 3)) if len(ends) >= 3 else []
    kept_rises = [b - a for a, b in pairwise(kept)]
    if kept and sum(1 for r in kept_rises if r <= 0) <= 1 and kept[-1] - kept[0] >= 0.1 * total:
        return True
    allocated = [s.allocated_bytes for s in steps]
    known = all(a is not None for a in allocated)
    return known and theil_sen(xs, [float(a or 0) for a in allocated]) >= TENSOR_SHARE * slope


def detect(data: AnalysisInput) -> list[Finding]:
    steps = _judged_steps(data)
    n = len(steps)
    if n < MIN_STEPS:
        return []
    rss = [float(s.rss_bytes or 0) for s in steps]
    blocks = block_medians(rss, min(MAX_BLOCKS, n // 3))
    rises = [b - a for a, b in pairwise(blocks)]
    dips = sum(1 for r in rises if r <= 0)
    allowed_dips = 1 if len(blocks) >= 5 else 0
    if dips > allowed_dips:
        return []
    total = blocks[-1] - blocks[0]
    if total < MIN_GROWTH_BYTES or total < MIN_GROWTH_FRACTION * blocks[0]:
        return []
    if max(rises) > MAX_JUMP_SHARE * total:
        return []  # one jump (a buffer allocated once), not a steady climb
    xs = [float(s.step) for s in steps]
    slope = theil_sen(xs, rss)
    if slope <= 0:
        return []
    cpu = data.info is None or data.info.device_type == "cpu"
    if cpu and _tensors_explain(steps, xs, slope, total):
        return []
    first, last = steps[0], steps[-1]
    census = _census_verdict(data.observed(CensusTotals), first.step, last.step, total)
    if census == "explains":
        return []  # reachable tensors/arrays grow with it: memory-growth names their holder
    growth = int(rss[-1] - rss[0])
    if census == "flat":
        return [_flat_finding(first, last, rss, slope, growth)]
    return [
        Finding(
            kind=KIND,
            severity="warning",
            title=f"Host memory (RSS) grows steadily: {format_size(slope, signed=True)}/step",
            detail=(
                f"The process's resident memory grew from {format_size(rss[0])} at step "
                f"{first.step} to {format_size(rss[-1])} at step {last.step} "
                f"({format_size(growth, signed=True)}), rising in {len(rises) - dips} of "
                f"{len(rises)} stretches of the run, while the tensor memory memwatch "
                "measures did not grow with it: Python objects or native buffers accumulate "
                "on the host (a Dataset cache, per-sample values kept in a list, DataLoader "
                "workers touching copied objects). memwatch cannot see which objects, so no "
                "line is named."
            ),
            first_step=first.step,
            fix=(
                "Find what accumulates from step to step (a cache in the Dataset, values "
                "appended to a list) and bound or drop it; two `tracemalloc` snapshots a few "
                "hundred steps apart name the line that allocates it."
            ),
            location=None,
            variable=None,
            bytes=growth,
            growth_per_step_bytes=int(slope),
            evidence={
                "rss_first_bytes": int(rss[0]),
                "rss_last_bytes": int(rss[-1]),
                "last_step": last.step,
                "block_medians_bytes": [int(b) for b in blocks],
                "steps_judged": n,
                "warmup_steps_skipped": len(data.steps) - n,
            },
        )
    ]


def _census_verdict(
    censuses: list[Observed[CensusTotals]], first_step: int, last_step: int, rss_growth: float
) -> str:
    """ "explains", "flat" or "" (no census spans the growth) from the censuses' totals."""
    # Censuses from the whole run up to its last step: one taken during warm-up still says
    # what was reachable before the growth.
    spanning = [c for c in censuses if c.step <= last_step]
    if len(spanning) < 2 or max(c.step for c in spanning) < first_step:
        return ""
    spanning.sort(key=lambda c: c.step)
    a, b = spanning[0], spanning[-1]
    if b.step - a.step < (last_step - first_step) / 2:
        return ""  # the censuses saw too little of the growth to speak for it
    reachable = lambda c: c.evidence.host_tensor_bytes + c.evidence.array_bytes  # noqa: E731
    grew = reachable(b) - reachable(a)
    slope_share = grew / max(rss_growth * (b.step - a.step) / max(last_step - first_step, 1), 1)
    if slope_share >= TENSOR_SHARE:
        return "explains"
    items = (b.evidence.container_items - a.evidence.container_items) / (b.step - a.step)
    if slope_share < CENSUS_FLAT_SHARE and items < CENSUS_FLAT_ITEMS_PER_STEP:
        return "flat"
    return ""


def _flat_finding(
    first: StepRecord, last: StepRecord, rss: list[float], slope: float, growth: int
) -> Finding:
    return Finding(
        kind=KIND,
        severity="info",
        title=(
            f"Host memory (RSS) rose {format_size(slope, signed=True)}/step without data "
            "the program keeps"
        ),
        detail=(
            f"The process's resident memory grew from {format_size(rss[0])} at step "
            f"{first.step} to {format_size(rss[-1])} at step {last.step} "
            f"({format_size(growth, signed=True)}), but memwatch's census of everything "
            "reachable from the program (frames, module globals, closures, object "
            "attributes, containers) found the tensors, arrays and container items flat "
            "over the same steps. Memory the allocator keeps after growing batches, or "
            "garbage waiting for the collector, looks like this; it is not data your code "
            "holds on to."
        ),
        first_step=first.step,
        fix=(
            "Nothing to change unless it keeps rising over a long run; then two "
            "`tracemalloc` snapshots a few hundred steps apart name the line that allocates."
        ),
        location=None,
        variable=None,
        bytes=growth,
        growth_per_step_bytes=int(slope),
        evidence={
            "rss_first_bytes": int(rss[0]),
            "rss_last_bytes": int(rss[-1]),
            "last_step": last.step,
            "census": "flat",
        },
    )


#: A rule on StepRecord.rss_bytes, told by the census what reachable data did meanwhile.
DETECTOR = Detector(KIND, (CensusTotals,), detect)
