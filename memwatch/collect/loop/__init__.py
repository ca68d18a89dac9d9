"""Evidence about how the training loop uses forward, backward, zero_grad and step.

One file per evidence kind, one probe to ride the hooks:

| evidence (``memwatch.evidence``) | recorder | detector |
|---|---|---|
| ``RetainGraphBackward`` | ``retain.py`` | ``retain-graph-leak`` |
| ``ForwardWithoutBackward`` | ``forwards.py`` | ``graph-retained-in-inference`` |
| ``EvalPassTrainMode`` | ``eval_mode.py`` (and ``forwards.py``) | ``eval-mode-missing`` |
| ``MicrobatchBackward`` | ``microbatch.py`` | ``microbatch-graph-accumulation`` |
| ``GradReset`` | ``grad_reset.py`` | ``grad-reset-before-step`` |
| ``GradCarriedOver`` | ``grad_reset.py`` | ``grad-never-reset`` |
| ``ConvInputShapes`` | ``conv_shapes.py`` | ``cudnn-benchmark-dynamic-shapes`` |
| ``UnbatchedForwards`` | ``unbatched.py`` | ``unbatched-forward`` |
| ``StaleOptimizerParams`` | ``stale_params.py`` | ``stale-optimizer-params`` |

``probe.LoopProbe`` dispatches the tracker's hooks to them (``common.py`` holds what
they share). Cost, in the common path of a healthy loop: a few attribute reads per hook.
Source lines are read (``memwatch.source.calls``) only when evidence is recorded; frames
are never kept (they hold the user's tensors). Evidence is recorded at step ends, only
for steps where something was seen, and thinned after the first 256 of a kind
(``common.Thinning``). No hook raises into the user's program: the tracker switches a
failing probe off, and the patched ``zero_grad``/``Optimizer.__init__``/``GradScaler.step``
and the optimizer hooks catch their own errors.
"""

from memwatch.collect.loop.probe import LoopProbe

__all__ = ["LoopProbe"]
