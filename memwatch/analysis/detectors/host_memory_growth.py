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
    growth = int(rss[-1] - rss[0])
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


DETECTOR = Detector(KIND, (), detect)  # a rule on StepRecord.rss_bytes alone
