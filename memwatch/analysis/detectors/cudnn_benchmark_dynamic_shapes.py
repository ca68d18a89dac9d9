"""``cudnn-benchmark-dynamic-shapes``: cudnn.benchmark is on while conv shapes keep changing.

Evidence (``conv-input-shapes`` events, one per step that brought a new input shape to a
root module containing convolutions, recorded only while the flag is on): how many
distinct shapes so far. With ``torch.backends.cudnn.benchmark = True`` every new shape
makes cuDNN time all its algorithms again (slow steps, extra workspace memory, and a
different algorithm per shape). The flag and the shapes are visible on a CPU run too,
so this fires there as a warning about the GPU run.

"Keep changing" means many distinct shapes (≥ 8) *and* new ones in at least a quarter of
the steps since the first: a few buckets, a last smaller batch or progressive resizing
(a new size per epoch) stay silent.
"""

from __future__ import annotations

from memwatch.analysis.base import AnalysisInput, Detector
from memwatch.analysis.detectors.loop_common import per_step_latest, site
from memwatch.evidence import ConvInputShapes
from memwatch.records import Finding

KIND = "cudnn-benchmark-dynamic-shapes"
MIN_SHAPES = 8
MIN_NEW_FRACTION = 0.25


def detect(data: AnalysisInput) -> list[Finding]:
    events = per_step_latest(data.observed(ConvInputShapes))
    if not events:
        return []
    distinct = max(e.evidence.distinct for e in events)
    if distinct < MIN_SHAPES:
        return []
    first = events[0]
    last_step = max([s.step for s in data.steps] + [events[-1].step])
    span = last_step - first.step + 1
    if len(events) < 4 or len(events) < MIN_NEW_FRACTION * span:
        return []
    location, variable = site(first)
    name = f"`{variable}`" if variable else str(first.evidence.model or "the model")
    examples = [list(x) for e in events[:3] for x in e.evidence.examples][:4]
    where = f" at {location}" if location else ""
    return [
        Finding(
            kind=KIND,
            severity="warning",
            title=(
                f"cudnn.benchmark is on while {name}'s input shapes keep changing "
                f"({distinct} shapes)"
            ),
            detail=(
                f"{name}{where} contains convolutions and saw {distinct} distinct input shapes, "
                f"new ones in {len(events)} of {span} steps (e.g. "
                f"{', '.join(str(tuple(x)) for x in examples)}). On a GPU, "
                "torch.backends.cudnn.benchmark=True re-tunes the convolution algorithms for "
                "every new shape: slow steps, extra workspace memory and memory use that "
                "differs from shape to shape."
            ),
            first_step=first.step,
            fix=(
                "Set `torch.backends.cudnn.benchmark = False` for dynamic input shapes, or "
                "pad/bucket the inputs to a few fixed shapes."
            ),
            location=location,
            variable=variable,
            evidence={
                "distinct_shapes": distinct,
                "steps_with_new_shapes": len(events),
                "steps_observed": span,
                "examples": examples,
            },
        )
    ]


DETECTOR = Detector(KIND, (ConvInputShapes,), detect)
