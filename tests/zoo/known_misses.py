"""Zoo cases today's detectors get wrong, each with what memwatch reported instead.

Keys are ``group/slug`` (``bugs/x`` and its twin ``fixed/x`` share a slug). ``bugs/...``
entries are misses (not found with the expected kind, or found but not named);
``fixed/...`` and ``healthy/...`` entries are FALSE ALARMS (the reason starts with
"FALSE ALARM" and names the kind raised). tests/zoo/test_zoo.py marks each listed case
``xfail(strict=True)``: when a detector starts getting a case right, its test XPASSes and
fails the suite until the entry is removed here. Reasons were written from
``python benchmarks/zoo.py`` output on today's detectors (each case in its own forked child).

Both zoo helpers' cases are listed: zoo-b's files (OOM, optimizer, hooks, cycles, caches,
zero_grad, frameworks) join samples/zoo when its branch is merged; until then their
entries simply match no case.
"""

from __future__ import annotations

KNOWN_MISSES: dict[str, str] = {
    # ---- zoo-a: graph retention and grad mode -------------------------------------------------
    # one step's graph or outputs kept alive (not growing)
    "bugs/module_keeps_last_activity": (
        "graph-kept-across-step is not a kind yet: `self.activity` keeps the last forward's "
        "output and graph until the next forward overwrites it; reported nothing"
    ),
    "bugs/engine_state_output_kept_until_next_iteration": (
        "not found: last step's (loss, y_pred, y) are held by `engine.state.output` (an "
        "attribute of an attribute of the Engine) while the next process_function runs; "
        "lingering-step-locals looks at locals only; reported nothing"
    ),
    "bugs/several_losses_each_backward_retain_graph": (
        "not found: every backward of the step (the last one too) passes retain_graph=True, so "
        "the step's graph stays alive until the loop rebinds the losses: kept one step, not "
        "growing; reported nothing"
    ),
    "bugs/gan_generator_loss_retain_graph": (
        "wrong kind: reported graph-retained-in-inference (error, `netD`), as on its fixed twin; "
        "the graph kept by `loss_g.backward(retain_graph=True)` lives one step (not growing), so "
        "no retain-graph-leak"
    ),
    # training-state smells (proposed kind train-mode-smell)
    "bugs/validation_leaves_model_in_eval_every_k": (
        "train-mode-smell is not a kind yet: after the every-10-iterations validation the "
        "encoders stay in eval mode (Dropout, BatchNorm) for the rest of the epoch's training; "
        "reported nothing"
    ),
    "bugs/train_function_never_calls_train_mode": (
        "train-mode-smell is not a kind yet: test() leaves the model in eval mode and train() "
        "never calls model.train(), so epochs 2-4 train with Dropout off; reported nothing"
    ),
    "bugs/detect_anomaly_left_on_in_helpers": (
        "train-mode-smell is not a kind yet: torch.autograd.set_detect_anomaly(True) at import "
        "stays on for the whole training run; reported nothing"
    ),
    # false alarms
    "fixed/gan_generator_loss_retain_graph": (
        "FALSE ALARM: graph-retained-in-inference (error) on `netD`: three D forwards per step, "
        "all of them used by the two backward passes"
    ),
    "fixed/wgan_gp_epoch_loss_without_item": (
        "FALSE ALARM: graph-retained-in-inference (error) on `D`: every critic forward feeds "
        "d_loss.backward() or the gradient penalty's autograd.grad (create_graph, retain_graph)"
    ),
    "healthy/mc_dropout_predictions_no_grad": (
        "FALSE ALARM: eval-mode-missing (warning) on `model`: Monte Carlo dropout deliberately "
        "switches only the Dropout layers back to train under no_grad (BatchNorm stays in eval)"
    ),
    # ---- zoo-b: everything else (reasons by zoo-b, checked against zoo-a's run of both sets) ----
    "bugs/zero_grad_per_microbatch": (
        "not found: zero_grad runs between the backward passes of one accumulation (bwd, "
        "zero_grad, bwd, ... , step); grad-reset-before-step only checks zero_grad directly "
        "before step; reported nothing"
    ),
    "bugs/zero_grad_outside_accumulation_if": (
        "not found: zero_grad every batch, step every 4th (two optimizers); the 3 discarded "
        "backward passes are not recognised; reported nothing"
    ),
    "bugs/accelerate_zero_grad_at_start_of_accumulate": (
        "not found: accelerate's wrapped zero_grad really zeroes only on the sync micro-step, "
        "wiping 3 accumulated backward passes before the last one; reported nothing"
    ),
    "bugs/zero_grad_missing_in_trainer_step": (
        "grad-never-reset is not a kind yet: Trainer.train_step never zeroes the LoRA "
        "gradients; reported nothing"
    ),
    "bugs/zero_grad_once_per_epoch": (
        "grad-never-reset is not a kind yet: model.zero_grad() once per epoch, 20 steps add up "
        "their gradients; reported nothing"
    ),
    "bugs/forward_hook_registered_every_forward": (
        "hooks-accumulate is not a kind yet: forward() registers a pre-hook (closure holding a "
        "tensor) on 3 layers per call, only the last handle is removed; reported nothing"
    ),
    "bugs/fault_injector_hooks_never_removed": (
        "hooks-accumulate is not a kind yet: a FaultInjector every 5 steps registers forward "
        "hooks and drops the handles (8 hooks per layer at the end); reported nothing"
    ),
    "bugs/module_method_alias_ref_cycle": (
        "tensors-in-gc-cycle is not a kind yet: `self.which_act = self.relu_act` makes each "
        "trial's model (2 MiB buffer) a cycle; 10 models alive until gc; reported nothing"
    ),
    "bugs/forward_hook_closure_captures_self": (
        "tensors-in-gc-cycle is not a kind yet: a forward hook closure capturing self makes "
        "each restart's model a cycle; reported nothing"
    ),
    "bugs/data_storage_parent_backref_cycle": (
        "tensors-in-gc-cycle is not a kind yet: each batch's Storage holds `_parent=self`, 40 "
        "batches alive until gc; reported lingering-step-locals (warning: h, agg, loss) and "
        "host-memory-growth (warning, no location)"
    ),
    "bugs/trainer_compute_metrics_keeps_eval_logits": (
        "not found: transformers Trainer.evaluation_loop concatenates every eval batch's logits "
        "(3 evaluations x 12 batches x 8x32x2000 floats) inside one evaluation, with no "
        "optimizer step during it; reported nothing"
    ),
    "fixed/per_sample_gradients_python_loop": (
        "FALSE ALARM: grad-reset-before-step (error): torch.func.grad (vmap) counted as a "
        "backward, then zero_grad, then p.grad assigned by hand before step (the bug twin gets "
        "the same false error besides its correct unbatched-forward)"
    ),
    "fixed/data_storage_parent_backref_cycle": (
        "FALSE ALARM: lingering-step-locals (warning) `h`, `agg`, `loss` from the previous step "
        "alive at the next forward (a flat loop in main(); not the reported bug)"
    ),
    "fixed/memoize_cache_keyed_by_tensor_args": (
        "FALSE ALARM: lingering-step-locals (warning) `out`, `loss` from the previous step "
        "alive at the next forward (a flat loop in main(); not the reported bug)"
    ),
    "fixed/log_metrics_keeps_detached_codes": (
        "FALSE ALARM: lingering-step-locals (warning) `z`, `x_hat`, `loss` from the previous "
        "step alive at the next forward (a flat loop in main(); not the reported bug)"
    ),
}

#: Verdicts that rest on host RSS (the allocator's reuse of freed memory), which changes
#: from run to run: marked ``xfail(strict=False)`` until host growth is attributed by a
#: census instead of RSS. Same key format and reason style as KNOWN_MISSES.
UNSTABLE: dict[str, str] = {}
